"""HEIC, AVIF and camera RAW read through the one image path (every door), and a clear message without the extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzero import ImageError, find_images, load_image
from tests.media import write_avif, write_dng, write_heic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytest.importorskip("pillow_heif")
pytest.importorskip("rawpy")
pytest.importorskip("pidng")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    red = Image.open(EXAMPLES / "red-circle.png")
    blue = Image.open(EXAMPLES / "blue-star.png")
    return {
        "heic": write_heic(red, folder / "red.heic"),
        "avif": write_avif(blue, folder / "blue.avif"),
        "dng": write_dng(red, folder / "red.dng"),
    }


@pytest.mark.parametrize("kind, example", [("heic", "red-circle.png"), ("avif", "blue-star.png")])
def test_heic_and_avif_decode_to_the_pictures_pixels(pictures: dict[str, Path], kind: str, example: str) -> None:
    image = load_image(pictures[kind])
    original = Image.open(EXAMPLES / example).convert("RGB")
    assert image.mode == "RGB" and image.size == original.size
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(original, np.int16)).mean()
    assert difference < 6, difference  # lossy at quality 90, but the same picture


def test_a_dng_is_developed_from_its_sensor_mosaic(pictures: dict[str, Path]) -> None:
    image = load_image(pictures["dng"])
    assert image.mode == "RGB" and image.size == Image.open(EXAMPLES / "red-circle.png").size
    side = image.size[0]
    centre = np.asarray(image)[side * 2 // 5 : side * 3 // 5, side * 2 // 5 : side * 3 // 5].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 150 and centre[1] < 90 and centre[2] < 150, centre  # the red circle's middle is red
    same = load_image(pictures["dng"].read_bytes())  # told by its bytes (the DNG version tag), not only the name
    assert np.array_equal(np.asarray(same), np.asarray(image))


def test_folders_list_the_new_formats(pictures: dict[str, Path]) -> None:
    folder = pictures["heic"].parent
    (folder / "notes.txt").write_text("not a picture")
    assert sorted(Path(p).name for p in find_images([folder])) == ["blue.avif", "red.dng", "red.heic"]


def test_every_door_labels_them(pictures: dict[str, Path]) -> None:
    """The CLI, through the one pipeline: each file gets its picture's label."""
    run = subprocess.run(
        [sys.executable, "-m", "clipzero", "classify", *map(str, pictures.values()), "--labels",
         "red circle, blue star, green cross", "--model", "clipzero-shapes", "--templates", "photo", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    labels = {Path(r["image"]).name: r["label"] for r in json.loads(run.stdout)}
    assert labels == {"red.heic": "red circle", "blue.avif": "blue star", "red.dng": "red circle"}


def test_damaged_files_name_the_format(pictures: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.heic"
    cut.write_bytes(pictures["heic"].read_bytes()[:200])
    with pytest.raises(ImageError, match=r"cut\.heic.*HEIF"):
        load_image(cut)
    broken = tmp_path / "broken.dng"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(ImageError, match=r"broken\.dng.*RAW"):
        load_image(broken)


_WITHOUT_EXTRA = """
import sys
sys.modules["pillow_heif"] = None; sys.modules["rawpy"] = None  # as if the formats extra were not installed
from clipzero import load_image, ImageError
for path in sys.argv[1:]:
    try:
        load_image(path)
        print(path, "read")
    except ImageError as exc:
        print(exc)
"""


def test_without_the_extra_each_file_says_what_to_install(pictures: dict[str, Path]) -> None:
    run = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRA, str(pictures["heic"]), str(pictures["dng"])],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = run.stdout.splitlines()
    assert len(lines) == 2, run.stdout + run.stderr
    hint = "need the formats extra: pip install 'clipzero[formats]'"
    assert "red.heic" in lines[0] and f"HEIC/HEIF images {hint}" in lines[0]
    assert "red.dng" in lines[1] and f"camera RAW files {hint}" in lines[1]
