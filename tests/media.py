"""Files of the formats phones and cameras write, made by the tests themselves: HEIC, AVIF, a camera RAW (DNG)
and videos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_heic(image: Image.Image, path: Path, quality: int = 90) -> Path:
    import pillow_heif

    pillow_heif.from_pillow(image.convert("RGB")).save(str(path), quality=quality)
    return path


def write_avif(image: Image.Image, path: Path, quality: int = 90) -> Path:
    image.convert("RGB").save(path, format="AVIF", quality=quality)
    return path


def write_dng(image: Image.Image, path: Path) -> Path:
    """A 12-bit RGGB Bayer mosaic of ``image`` as a DNG (what a camera's sensor records), for LibRaw to develop."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation

    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = rgb[:height, :width]
    raw = np.empty((height, width), dtype=np.uint16)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0] * 4095  # R
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1] * 4095  # G
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1] * 4095  # G
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2] * 4095  # B
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width), (Tag.TileLength, height),
        (Tag.Orientation, Orientation.Horizontal), (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 12),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0),
        (Tag.WhiteLevel, 4095), (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
        (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.BaselineExposure, [[0, 100]]),
        (Tag.Make, "clipzero"), (Tag.Model, "test sensor"),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2),
    ]:  # fmt: skip
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path=str(path.parent), compress=False)
    writer.convert(raw, filename=path.stem)  # writes <stem>.dng
    written = path.parent / f"{path.stem}.dng"
    if written != path:
        written.rename(path)
    return path


def write_video(scenes: Sequence[tuple[Image.Image, float]], path: Path, fps: int = 10, size: int = 96) -> Path:
    """An H.264 video of ``scenes``: each picture held for its number of seconds (a cut between scenes), with a
    slow drift within a scene so that its frames are not identical."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for picture, seconds in scenes:
            base = picture.convert("RGB").resize((size + 8, size + 8))
            for i in range(round(seconds * fps)):
                shift = i % 8
                frame = av.VideoFrame.from_image(base.crop((shift, 0, shift + size, size)))
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def huge_png(side: int = 8000) -> bytes:
    """A ``side`` x ``side`` 16-bit RGB PNG of one flat colour: tiny on the wire (about 124 KB at 8000), seconds to
    decode. Written chunk by chunk with zlib (Pillow writes no 16-bit RGB PNG)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x80\x00\x40\x00\x20\x00" * side  # filter byte, then 16-bit R, G, B per pixel
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
