"""The file formats clipzero reads beyond Pillow's own, registered in one place so that every door reads them.

- HEIC/HEIF (phones) through ``pillow-heif``, registered with Pillow on first need;
- AVIF through Pillow itself (its wheels read AVIF from 11.3 on), else ``pillow-heif`` where it still can;
- camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW) through ``rawpy`` (LibRaw), developed with the
  camera's white balance to 8-bit sRGB;
- video files (see :mod:`clipzero.video`) through PyAV.

Without the package a format needs, such a file is reported as unreadable with the ``pip install`` command that adds
it: ``clipzero[formats]`` for pictures, ``clipzero[video]`` for video.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from .errors import ImageError
from .extras import installed

__all__ = [
    "EXTRA_IMAGE_SUFFIXES",
    "RAW_SUFFIXES",
    "VIDEO_SUFFIXES",
    "kind_of",
    "open_special",
    "supported_formats",
]

HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
AVIF_SUFFIXES = frozenset({".avif"})
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
                          ".pef", ".srw"})  # fmt: skip
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".3gp"})

#: Picture endings listed from folders on top of Pillow's usual ones (read with the formats extra).
EXTRA_IMAGE_SUFFIXES = HEIF_SUFFIXES | AVIF_SUFFIXES | RAW_SUFFIXES

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_FORMATS_HINT = "pip install 'clipzero[formats]'"


def kind_of(name: str, head: bytes) -> str | None:
    """``"heif"``, ``"avif"`` or ``"raw"`` for a file that needs more than Pillow, by its bytes (an ISO ``ftyp``
    brand; DNG's version tag; Canon's marker) or, for RAW, its ending; None for everything Pillow reads itself."""
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), 64), 4)}
        if brands & _AVIF_BRANDS and head[8:12] not in _HEIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heif"
        if head[8:12] == b"crx ":  # Canon CR3
            return "raw"
    if Path(name).suffix.lower() in RAW_SUFFIXES or head[8:10] == b"CR" or _is_dng(head):  # CR2: "CR" at byte 8
        return "raw"
    return None


def _is_dng(data: bytes) -> bool:
    """A TIFF whose first directory has the DNGVersion tag (50706): a DNG, whatever its name."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return False
    import struct

    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        for i in range(min(count, 512)):
            start = offset + 2 + 12 * i
            (tag,) = struct.unpack(order + "H", data[start : start + 2])
            if tag == 50706:
                return True
    except struct.error:  # a directory past the end: not a readable TIFF, so not a DNG either
        return False
    return False


def open_special(kind: str, data: bytes, name: str) -> Image.Image:
    """Open HEIF, AVIF or RAW ``data`` as a PIL image (not yet converted to RGB).

    Raises:
        ImageError: the package the format needs is missing (the message names the pip command), or the data is
            not a readable file of that kind.
    """
    if kind == "raw":
        return _open_raw(data, name)
    if kind == "heif" or not _pillow_reads_avif():
        if not installed("pillow_heif"):
            what = "HEIC/HEIF" if kind == "heif" else "AVIF"
            raise ImageError(name, f"{what} images need the formats extra: {_FORMATS_HINT}")
        _register_heif()
    try:
        return Image.open(io.BytesIO(data))
    except Exception as exc:  # Pillow and the plugin raise several kinds for a damaged file
        raise ImageError(name, f"corrupt or unsupported {kind.upper()} data ({exc})") from exc


def supported_formats() -> dict[str, bool]:
    """Which extra formats this installation reads (for `clipzero info` and the docs)."""
    heif = installed("pillow_heif")
    return {"heif": heif, "avif": _pillow_reads_avif() or heif, "raw": installed("rawpy"), "video": installed("av")}


_REGISTERED = False


def _register_heif() -> None:
    global _REGISTERED
    if not _REGISTERED:
        import pillow_heif

        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener"):  # older pillow-heif releases also read AVIF
            pillow_heif.register_avif_opener()
        _REGISTERED = True


def _pillow_reads_avif() -> bool:
    from PIL import features

    try:
        return bool(features.check("avif"))
    except ValueError:  # a Pillow that does not know the feature's name
        return False


def _open_raw(data: bytes, name: str) -> Image.Image:
    if not installed("rawpy"):
        raise ImageError(name, f"camera RAW files need the formats extra: {_FORMATS_HINT}")
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            pixels = raw.postprocess(use_camera_wb=True, output_bps=8, no_auto_bright=False)
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise ImageError(name, f"corrupt or unsupported RAW data ({exc})") from exc
    return Image.fromarray(pixels, mode="RGB")
