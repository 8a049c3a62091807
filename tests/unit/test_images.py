"""images.load_image: every mode to correct RGB, EXIF orientation, and broken inputs named with their cause."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzero import ImageError, load_image
from clipzero.images import to_rgb


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (10, 8), (10, 20, 30)), tmp_path / "a.png")
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (10, 8)
    assert image.getpixel((3, 3)) == (10, 20, 30)


def test_bytes_and_pil_inputs(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 77).save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).getpixel((0, 0)) == (77, 77, 77)
    assert load_image(Image.new("L", (4, 4), 5)).getpixel((1, 1)) == (5, 5, 5)


def test_rgba_transparency_composited_over_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    out = load_image(_save(image, tmp_path / "t.png"))
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_la_half_transparent(tmp_path: Path) -> None:
    out = load_image(_save(Image.new("LA", (2, 2), (0, 128)), tmp_path / "la.png"))
    value = out.getpixel((0, 0))
    assert all(120 <= c <= 135 for c in value)  # black at half alpha over white is mid grey


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    image.putpixel((0, 0), 1)
    image.info["transparency"] = 0  # colour 0 (green) is transparent
    out = load_image(_save(image, tmp_path / "p.png", transparency=0))
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (255, 0, 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    out = load_image(_save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95))
    r, g, b = out.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_scaled_not_clipped(tmp_path: Path) -> None:
    array = np.array([[0, 32768], [65535, 16384]], dtype=np.uint16)
    path = _save(Image.fromarray(array), tmp_path / "16.png")
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0))[0] in (127, 128)  # mid grey, where a clipping convert would give 255
    assert out.getpixel((0, 1)) == (255, 255, 255)


def test_float_image_scaled() -> None:
    out = to_rgb(Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32), mode="F"))
    assert out.getpixel((1, 0))[0] in (127, 128) and out.getpixel((0, 1))[0] == 255


def test_exif_orientation_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    out = load_image(_save(image, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert out.size == (10, 20)
    assert out.getpixel((5, 3))[0] > 200  # the red half is now on top


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image at all", "not an image"),
    ],
)
def test_bad_files_named_with_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value) and reason in info.value.reason


def test_truncated_jpeg(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    Image.effect_noise((256, 256), 60).convert("RGB").save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(cut)


def test_corrupt_png(tmp_path: Path) -> None:
    good = tmp_path / "g.png"
    Image.effect_noise((64, 64), 60).save(good)
    data = bytearray(good.read_bytes())
    data[60:200] = b"\x00" * 140  # destroy compressed data inside IDAT
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageError) as info:
        load_image(bad)
    assert "bad.png" in str(info.value)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_pixel_limit_refuses_before_decoding(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (300, 200)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path, max_pixels=10_000)
    assert load_image(path, max_pixels=None).size == (300, 200)


def test_jpeg_draft_decodes_smaller_but_never_below_the_request(tmp_path: Path) -> None:
    path = _save(Image.effect_noise((640, 480), 40).convert("RGB"), tmp_path / "big.jpg", quality=90)
    small = load_image(path, draft=(224, 224))
    assert small.size == (320, 240)  # libjpeg scaled by 1/2: still >= 224 on both sides
    assert load_image(path).size == (640, 480)
    png = _save(Image.new("RGB", (640, 480)), tmp_path / "big.png")
    assert load_image(png, draft=(224, 224)).size == (640, 480)  # only JPEG has a draft mode


def test_device_files_and_fifos_are_refused_without_reading(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(path)


def test_huge_images_are_shrunk_right_after_decoding() -> None:
    from clipzero.images import HUGE_PIXELS

    side = int(HUGE_PIXELS**0.5) + 100
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buffer, format="PNG")
    shrunk = load_image(buffer.getvalue(), draft=(224, 224))
    assert 448 <= shrunk.width < side // 2 and shrunk.getpixel((5, 5)) == (10, 200, 30)
    assert load_image(buffer.getvalue()).size == (side, side)  # without a draft size, nothing is lost
    small = io.BytesIO()
    Image.new("RGB", (1000, 800), (1, 2, 3)).save(small, format="PNG")
    assert load_image(small.getvalue(), draft=(224, 224)).size == (1000, 800)  # ordinary images are untouched
