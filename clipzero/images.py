"""Opening images safely.

Every image that enters clipzero goes through :func:`load_image`: EXIF orientation is applied, every mode becomes
8-bit RGB the way a person would see it (transparent areas over white, 16-bit and float images scaled, CMYK
converted), huge images are refused before they are decoded, and any failure is an :class:`ImageError` that names
the file and the cause.
"""

from __future__ import annotations

import ctypes
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .formats import EXTRA_IMAGE_SUFFIXES, VIDEO_SUFFIXES, kind_of, open_special

if TYPE_CHECKING:
    import torch

    from .encoder import Encoder

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HUGE_PIXELS",
    "IMAGE_SUFFIXES",
    "VIEW_COUNTS",
    "Decoder",
    "ImageSource",
    "NamedImage",
    "decode",
    "find_images",
    "load_image",
    "read_image_file",
    "release_memory",
    "source_name",
    "thumbnail",
    "to_rgb",
    "view_boxes",
]

#: Images with more pixels than this are refused before decoding (about 11k x 11k, 384 MB as RGB). Pillow's own
#: bomb limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, about 179M) still applies above it.
DEFAULT_MAX_PIXELS = 128_000_000

#: Images over this many pixels are shrunk right after decoding and their memory handed back to the system.
HUGE_PIXELS = 16_000_000

@dataclass(frozen=True)
class NamedImage:
    """A decoded picture that has a name and a content id of its own, such as a video frame (``clip.mp4#t=2.00``):
    the pipeline names it, stores it and looks it up by these instead of by file bytes."""

    name: str
    image: Image.Image
    sha256: str
    size: int = 0  # the size and modification time of the file it came from (a store's unchanged-file check)
    mtime_ns: int = 0


ImageSource = str | os.PathLike[str] | bytes | Image.Image | NamedImage


#: File endings treated as images when a folder is listed (files named explicitly are always tried). HEIC, AVIF and
#: camera RAW files are listed too: without the formats extra each is reported with the command that adds it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}) | EXTRA_IMAGE_SUFFIXES


def find_images(paths: Iterable[str | os.PathLike[str]], recursive: bool = False, videos: bool = False) -> list[str]:
    """Expand paths into image files: files as given, folders listed (sorted; with ``recursive``, all the way
    down) keeping files with an image ending (and with ``videos``, a video ending). A path that does not exist is
    kept, to be reported by the reader."""
    endings = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if videos else frozenset())
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            found.extend(str(p) for p in sorted(pattern) if p.is_file() and p.suffix.lower() in endings)
        else:
            found.append(os.fspath(raw))
    return found


def source_name(source: ImageSource) -> str:
    """A short name for an image source, for messages and outputs: the path as given, or a description."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, NamedImage):
        return source.name
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or f"<PIL image {source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    name: str | None = None,
) -> Image.Image:
    """Open an image and return it as an 8-bit RGB PIL image, upright.

    Args:
        source: a path, the encoded bytes of an image file, or a PIL image.
        max_pixels: refuse images with more pixels than this (None: no limit).
        draft: the smallest size the caller needs; a JPEG is then decoded at a reduced scale that is still at
            least that large (libjpeg's DCT scaling: a 640x480 photo for a 224 px model decodes at 320x240,
            several times faster). Other formats ignore it.
        name: the file's name when ``source`` is its bytes (for messages, and to tell a camera RAW by its ending).

    Returns:
        A fully decoded ``RGB`` image.

    Raises:
        ImageError: the file is missing, unreadable, empty, not an image, truncated or corrupt, or too large.

    Example:
        >>> load_image("holiday.jpg").mode
        'RGB'
    """
    name = name or source_name(source)
    if isinstance(source, NamedImage):
        source = source.image
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, name)
    try:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageError(
                name,
                f"image is {image.width}x{image.height} = {image.width * image.height:,} pixels, over the limit "
                f"of {max_pixels:,} (a possible decompression bomb); raise max_pixels if it is genuine",
            )
        with warnings.catch_warnings():
            # Pillow warns about large images and odd EXIF; the pixel limit above is the policy.
            warnings.simplefilter("ignore")
            if draft is not None and image.format == "JPEG":
                image.draft("RGB", draft)
            image.load()
            huge = image.width * image.height > HUGE_PIXELS
            if huge and draft is not None:
                image = _reduce(image, draft)
            image = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(image)
            if huge:
                del image
                release_memory()
            return rgb
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(name, _describe(exc)) from exc


def thumbnail(source: ImageSource, side: int = 256, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A small RGB copy of an image, at most ``side`` pixels on a side (decoded at draft size: cheap for a JPEG).

    Raises:
        ImageError: as :func:`load_image`.
    """
    image = load_image(source, max_pixels=max_pixels, draft=(side, side))
    image.thumbnail((side, side))
    return image


def _reduce(image: Image.Image, draft: tuple[int, int]) -> Image.Image:
    """A huge decoded image shrunk by an integer factor (box filter), still at least twice ``draft``: every later
    step (orientation, RGB conversion, preprocessing) then works on a small copy and the large buffer is freed."""
    factor = min(image.width // (2 * draft[0]), image.height // (2 * draft[1]))
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except (ValueError, NotImplementedError):  # modes reduce() does not support (palette, 1-bit)
        return image


def release_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc keeps it otherwise, and RSS stays high after
    a huge image); a no-op where there is no glibc."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        try:
            _LIBC.malloc_trim(0)
        except AttributeError:
            _LIBC = False


_LIBC: Any = None


def read_image_file(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
    """The bytes and stat of an image file: regular files only, read once.

    Raises:
        ImageError: missing, a directory, a device or FIFO, empty, or unreadable (the reason says which).
    """
    name = os.fspath(path)
    target = Path(path)
    try:
        if target.is_dir():
            raise ImageError(name, "is a directory, not an image file")
        info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(name, "not a regular file (a device, FIFO or socket): refused")
        if info.st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        return target.read_bytes(), info
    except FileNotFoundError as exc:
        raise ImageError(name, "file not found") from exc
    except PermissionError as exc:
        raise ImageError(name, "permission denied") from exc
    except OSError as exc:
        raise ImageError(name, f"cannot read file: {exc.strerror or exc}") from exc


def _open(source: str | os.PathLike[str] | bytes, name: str) -> Image.Image:
    if isinstance(source, bytes):
        if not source:
            raise ImageError(name, "empty file (0 bytes)")  # worded as for a path: an upload is a file too
        data = source
    else:
        data = read_image_file(source)[0]
    special = kind_of(name, data)
    if special is not None:  # HEIC, AVIF, camera RAW: the formats module knows what reads them
        return open_special(special, data, name)
    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(stream)
    except UnidentifiedImageError as exc:
        raise ImageError(name, "not an image, or a format Pillow cannot read") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(name, _describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated or incomplete image data ({text})"
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused as a possible decompression bomb ({text})"
    return f"corrupt image data ({text})"


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparency (RGBA, LA, palette with a transparent colour) is composited over ``background``; 16-bit and
    32-bit integer and float greyscale images are scaled to 0-255 rather than clipped; CMYK and YCbCr go through
    Pillow's conversions.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _scale_to_rgb(image)
    if (mode == "P" and "transparency" in image.info) or mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "RGBA"):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, background)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")


def _scale_to_rgb(image: Image.Image) -> Image.Image:
    # High bit-depth greyscale: Pillow's own convert("L") clips at 255, which turns most 16-bit images white.
    array = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max(initial=0) > 255):
        top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) <= 65535 else float(array.max())
        scaled = np.clip(array.astype(np.float64) / top * 255.0, 0, 255)
    elif image.mode == "F":
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if 0.0 <= lo and hi <= 1.0:
            scaled = array * 255.0
        else:
            scaled = (array - lo) / ((hi - lo) or 1.0) * 255.0
        scaled = np.nan_to_num(scaled)
    else:
        scaled = array.astype(np.float64)
    grey = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return grey.convert("RGB")


#: How many views of an image multi-label tagging may score: the whole image alone (1); with the four half-size
#: quarters (5); with a 3x3 grid of half-size crops, overlapping by half (10).
VIEW_COUNTS = (1, 5, 10)


def view_boxes(views: int) -> list[tuple[float, float, float, float]]:
    """The regions of ``views`` views, as (left, top, right, bottom) fractions of the image; the whole image first.

    Raises:
        ValueError: ``views`` is not one of :data:`VIEW_COUNTS`.
    """
    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views}")
    steps = {1: (), 5: (0.0, 0.5), 10: (0.0, 0.25, 0.5)}[views]
    return [(0.0, 0.0, 1.0, 1.0)] + [(x, y, x + 0.5, y + 0.5) for y in steps for x in steps]


@dataclass(frozen=True)
class Decoder:
    """How images become model input: the model's preprocessing, its draft size and the pixel limit.

    Attributes:
        preprocess: PIL RGB image -> float tensor (3, H, W).
        draft: the smallest decoded size the model needs (its input side, square; twice that with views, so that
            a half-size crop still has the model's input resolution).
        max_pixels: images with more pixels are refused before decoding (None: no limit).
        views: 1, or the number of views (:func:`view_boxes`) each image becomes, decoded once.
    """

    preprocess: Callable[[Image.Image], torch.Tensor]
    draft: tuple[int, int]
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    views: int = 1

    @classmethod
    def for_encoder(cls, encoder: Encoder, max_pixels: int | None = DEFAULT_MAX_PIXELS, views: int = 1) -> Decoder:
        view_boxes(views)  # a wrong count fails here, before any image is read
        side = encoder.draft_size if views == 1 else (2 * encoder.draft_size[0], 2 * encoder.draft_size[1])
        return cls(encoder.preprocess, side, max_pixels, views)


def decode(source: ImageSource, decoder: Decoder, name: str | None = None) -> Any:
    """One image (path, bytes or PIL; ``name``: the file's name for bytes) -> the model's input tensor (3, H, W),
    or (views, 3, H, W) for a decoder with views: the image is decoded once and cropped.

    Raises:
        ImageError: it cannot be read or decoded (the error names it and says why).
    """
    image = load_image(source, max_pixels=decoder.max_pixels, draft=decoder.draft, name=name)
    if decoder.views == 1:
        return decoder.preprocess(image)
    import torch

    width, height = image.size
    crops = [image if box == (0.0, 0.0, 1.0, 1.0) else
             image.crop((round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)))
             for box in view_boxes(decoder.views)]  # fmt: skip
    return torch.stack([decoder.preprocess(crop) for crop in crops])
