"""Tags where photos live, end to end: `clipzero tag --xmp` and `clipzero export` in subprocesses with the bundled
model, the keywords read back by ExifTool (as photo managers read them), the folders read by torchvision's ImageFolder
and by `clipzero finetune probe`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABELS = str(EXAMPLES / "labels-en.txt")

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None,
                                    reason="Debian's libimage-exiftool-perl is not installed (make test installs it)")
pytest.importorskip("pyexiv2")


def clipzero(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clipzero", *args], capture_output=True, text=True, timeout=300)


def keywords(path: Path) -> dict[str, list[str]]:
    """What ExifTool reads from a sidecar or an image: the flat and the hierarchical keywords."""
    out = subprocess.run(["exiftool", "-j", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    found = json.loads(out.stdout)[0]

    def listed(value: Any) -> list[str]:
        return [] if value is None else [str(v) for v in value] if isinstance(value, list) else [str(value)]

    return {"subject": listed(found.get("Subject")), "hierarchical": listed(found.get("HierarchicalSubject"))}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for picture in EXAMPLES.glob("*.png"):
        shutil.copy(picture, folder / picture.name)
    return folder


def _tag(photos: Path, out: Path, *extra: str) -> None:
    done = clipzero("tag", str(photos), "--model", "clipzero-shapes", "--labels-file", LABELS, "-o", str(out), "-q",
                    *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr


@needs_exiftool
def test_xmp_keywords_merge_with_a_persons_own_and_a_rerun_changes_nothing(photos: Path, tmp_path: Path) -> None:
    own = photos / "red-circle.png.xmp"  # a keyword a person gave the photo in their photo manager
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=holiday", "-XMP-lr:HierarchicalSubject=trips|holiday",
                    str(own)], check=True)  # fmt: skip
    assert keywords(own)["subject"] == ["holiday"]
    results = tmp_path / "tags.jsonl"
    _tag(photos, results, "--xmp")
    assert keywords(own) == {"subject": ["holiday", "red circle"],
                             "hierarchical": ["trips|holiday", "clipzero|red circle"]}  # fmt: skip
    assert keywords(photos / "blue-star.png.xmp") == {"subject": ["blue star"], "hierarchical": ["clipzero|blue star"]}
    before = {p.name: p.read_bytes() for p in photos.glob("*.xmp")}
    assert len(before) == 8

    again = clipzero("export", str(results), "--to", "xmp", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"written": 0, "unchanged": 8, "failed": []}
    assert {p.name: p.read_bytes() for p in photos.glob("*.xmp")} == before  # idempotent: not a byte changed

    rows = [json.loads(line) for line in results.read_text().splitlines()]
    for row in rows:  # another run that saw the red circle as a blue star
        if row["image"].endswith("red-circle.png"):
            row["label"] = "blue star"
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert clipzero("export", str(changed), "--to", "xmp").returncode == 0
    assert keywords(own) == {"subject": ["holiday", "blue star"],
                             "hierarchical": ["trips|holiday", "clipzero|blue star"]}  # fmt: skip

    lightroom = clipzero("export", str(results), "--to", "xmp", "--naming", "lightroom", "--parent", "auto")
    assert lightroom.returncode == 0, lightroom.stderr
    assert keywords(photos / "green-cross.xmp") == {"subject": ["green cross"], "hierarchical": ["auto|green cross"]}


@needs_exiftool
def test_in_place_writes_into_a_jpeg_and_leaves_its_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "jpegs"
    folder.mkdir()
    photo = folder / "star.jpg"
    Image.open(EXAMPLES / "blue-star.png").convert("RGB").save(photo, quality=90)
    pixels = np.asarray(Image.open(photo))
    results = tmp_path / "tags.csv"
    _tag(folder, results)
    done = clipzero("export", str(results), "--to", "xmp", "--in-place")
    assert done.returncode == 0, done.stderr
    assert keywords(photo) == {"subject": ["blue star"], "hierarchical": ["clipzero|blue star"]}
    assert np.array_equal(np.asarray(Image.open(photo)), pixels)
    assert not list(folder.glob("*.xmp")) and not list(folder.glob(".*"))  # no sidecar, no temporary file left


@needs_exiftool
def test_a_damaged_or_read_only_sidecar_and_a_moved_image_are_reported(photos: Path, tmp_path: Path) -> None:
    results = tmp_path / "tags.jsonl"
    _tag(photos, results)
    damaged = photos / "blue-star.png.xmp"
    damaged.write_bytes(b"<x:xmpmeta this is not XMP <<<")
    locked = photos / "green-cross.png.xmp"
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=mine", str(locked)], check=True)
    locked.chmod(stat.S_IRUSR | stat.S_IRGRP)
    locked_bytes = locked.read_bytes()
    (photos / "yellow-heart.png").rename(tmp_path / "moved.png")
    done = clipzero("export", str(results), "--to", "xmp", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    failed = {Path(f["image"]).name: f["error"] for f in report["failed"]}
    assert set(failed) == {"blue-star.png", "green-cross.png", "yellow-heart.png"}, failed
    assert "blue-star.png.xmp" in failed["blue-star.png"] and "left as it was" in failed["blue-star.png"]
    assert "read-only" in failed["green-cross.png"] and "moved" in failed["yellow-heart.png"]
    assert report["written"] == 5  # the rest
    assert damaged.read_bytes() == b"<x:xmpmeta this is not XMP <<<" and locked.read_bytes() == locked_bytes
    assert "blue-star.png" in done.stderr  # each failure named on stderr too
    assert not [p for p in photos.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_class_folders_are_read_by_imagefolder_and_by_finetune_probe(photos: Path, tmp_path: Path) -> None:
    results = tmp_path / "tags.jsonl"
    _tag(photos, results, "--threshold", "0.5")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    out = tmp_path / "dataset"
    done = clipzero("export", str(results), "--to", "folders", str(out))
    assert done.returncode == 0, done.stderr
    expected = {(row["label"] or "none of these", Path(row["image"]).name) for row in rows}
    found = {(p.parent.name, p.name) for p in out.glob("*/*")}
    assert found == expected
    assert all(p.is_symlink() and p.resolve().parent == photos.resolve() for p in out.glob("*/*"))  # links
    again = clipzero("export", str(results), "--to", "folders", str(out), "--json")
    assert json.loads(again.stdout)["written"] == 0  # a rerun adds nothing

    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(out))
    assert sorted(dataset.classes) == sorted({label for label, _ in expected}) and len(dataset) == len(rows)
    copies = tmp_path / "copies"
    assert clipzero("export", str(results), "--to", "folders", str(copies), "--copy").returncode == 0
    assert not any(p.is_symlink() for p in copies.glob("*/*")) and len(list(copies.glob("*/*"))) == len(rows)
    probe = clipzero("finetune", "probe", str(out), "--model", "clipzero-shapes", "--out", str(tmp_path / "head.pt"),
                     "-q")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert (tmp_path / "head.pt").is_file()


def test_multi_label_images_go_in_every_folder_that_applies(tmp_path: Path) -> None:
    from clipzero.export import export_folders

    picture = tmp_path / "scene.png"
    shutil.copy(EXAMPLES / "red-circle.png", picture)
    rows = [{"image": str(picture), "label": "red circle",
             "labels": [{"label": "red circle", "score": 0.9}, {"label": "blue star", "score": 0.4}]},
            {"image": str(tmp_path / "gone.png"), "label": "blue star"},
            {"image": "broken.png", "error": "not an image"}]  # fmt: skip
    report = export_folders(rows, tmp_path / "out", min_score=0.3)
    assert sorted(p.parent.name for p in (tmp_path / "out").glob("*/*")) == ["blue star", "red circle"]
    assert [Path(image).name for image, _ in report.failed] == ["gone.png", "broken.png"]
    strict = export_folders(rows[:1], tmp_path / "strict", min_score=0.5)
    assert [Path(p).parent.name for p in strict.written] == ["red circle"]


def test_export_refuses_wrong_requests(tmp_path: Path) -> None:
    results = tmp_path / "tags.jsonl"
    results.write_text("")
    for args, words in ((["--to", "folders"], "needs the one folder"), (["--to", "xmp", "out"], "no OUT folder"),
                        (["--to", "zip"], "not a place"), (["--to", "folders", "o", "--in-place"], "--in-place is for"),
                        ):  # fmt: skip
        done = clipzero("export", str(results), *args)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
    missing = clipzero("export", str(tmp_path / "none.jsonl"), "--to", "xmp")
    assert missing.returncode == 2 and "no such result file" in missing.stderr
    assert os.path.exists(results)
