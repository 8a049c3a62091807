"""`clipzero tag` end to end: bad files reported, resume after kill -9, formats agree, batch size does not matter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzero.outputs import read_results
from tests.cli.test_cli import run
from tests.conftest import write_pictures

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def _pictures(folder: Path, n: int) -> list[Path]:
    return write_pictures(folder, n, ".jpg", seed=7, size=(40, 32))


def _bad_files(folder: Path) -> list[Path]:
    good = folder / "p000.jpg"
    bad = {
        "empty.jpg": b"",
        "text.png": b"just some text, not pixels",
        "truncated.jpg": good.read_bytes()[: good.stat().st_size // 3],
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
    }
    paths = []
    for name, data in bad.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    huge = folder / "huge.png"  # 12000 x 12000 = 144 MP, over the 128 MP limit; tiny on disk
    Image.new("1", (12000, 12000)).save(huge)
    paths.append(huge)
    return paths


def test_good_tagged_bad_reported_exit_0(tiny_model_dir: Path, tmp_path: Path) -> None:
    good = _pictures(tmp_path / "pics", 6)
    bad = _bad_files(tmp_path / "pics")
    out = tmp_path / "tags.jsonl"
    tag = (
        "tag",
        str(tmp_path / "pics"),
        "--labels",
        "red",
        "green",
        "blue",
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--templates",
        "photo",
        "--json",
    )
    result = run(*tag, "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["tagged"], summary["failed"], summary["skipped"]) == (len(good), len(bad), 0)
    rows = read_results(out)
    assert sorted(r["image"] for r in rows) == sorted(map(str, good))
    assert all(len(r["sha256"]) == 64 and r["label"] == r["predictions"][0]["label"] for r in rows)
    errors = [json.loads(line) for line in Path(str(out) + ".errors.jsonl").read_text().splitlines()]
    reasons = {Path(e["image"]).name: e["error"] for e in errors}
    assert set(reasons) == {p.name for p in bad}
    assert "over the limit" in reasons["huge.png"] and "empty" in reasons["empty.jpg"]
    assert "tagged 6" in result.stderr and "images/s" in result.stderr and "precision" in result.stderr
    again = run(*tag)
    second = json.loads(again.stdout)
    assert (second["tagged"], second["skipped"], second["failed"]) == (0, 6, len(bad))  # resumed; bad retried
    assert len(read_results(out)) == 6


def test_resume_after_kill_each_image_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    pics = _pictures(tmp_path / "pics", 150)
    out = tmp_path / "tags.csv"
    command = [
        sys.executable,
        "-m",
        "clipzero",
        "tag",
        str(tmp_path / "pics"),
        "--labels",
        "red",
        "green",
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--templates",
        "photo",
        "--batch-size",
        "4",
        "--workers",
        "2",
        "--quiet",
    ]
    writer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and writer.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 14:
            break
        time.sleep(0.05)
    assert writer.poll() is None, "the run finished before it could be killed"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    partial = len(read_results(out))
    assert 12 <= partial < 150
    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["skipped"] >= partial
    images = [r["image"] for r in read_results(out)]
    assert sorted(images) == sorted(map(str, pics))  # each image exactly once


@pytest.mark.slow
def test_formats_hold_the_same_rows_and_batch_size_does_not_matter(tiny_model_dir: Path, tmp_path: Path) -> None:
    _pictures(tmp_path / "pics", 40)
    tables = {}
    for fmt, batch in (("jsonl", "1"), ("csv", "32"), ("parquet", "32")):
        out = tmp_path / f"tags.{fmt}"
        result = run(
            "tag",
            str(tmp_path / "pics"),
            "--labels",
            "red",
            "green",
            "blue",
            "yellow",
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--templates",
            "photo",
            "--batch-size",
            batch,
            "--top-k",
            "3",
        )
        assert result.returncode == 0, result.stderr
        tables[fmt] = {r["image"]: r for r in read_results(out)}
    assert not (tmp_path / "tags.parquet.partial.jsonl").exists()
    base = tables["jsonl"]
    for fmt in ("csv", "parquet"):
        assert set(tables[fmt]) == set(base)
        for image, row in base.items():
            other = tables[fmt][image]
            assert other["sha256"] == row["sha256"] and other["label"] == row["label"]
            assert [p["label"] for p in other["predictions"]] == [p["label"] for p in row["predictions"]]
            assert np.allclose(
                [p["score"] for p in other["predictions"]], [p["score"] for p in row["predictions"]], atol=1e-4
            )


def test_store_reuse(tiny_model_dir: Path, tmp_path: Path) -> None:
    _pictures(tmp_path / "pics", 8)
    store = tmp_path / "store"
    first = run(
        "tag",
        str(tmp_path / "pics"),
        "--labels",
        "red",
        "blue",
        "--out",
        str(tmp_path / "a.jsonl"),
        "--model",
        str(tiny_model_dir),
        "--store",
        str(store),
        "--json",
    )
    assert json.loads(first.stdout)["encoded"] == 8
    second = run(
        "tag",
        str(tmp_path / "pics"),
        "--labels",
        "red",
        "blue",
        "--out",
        str(tmp_path / "b.jsonl"),
        "--store",
        str(store),
        "--json",
    )
    summary = json.loads(second.stdout)
    assert (summary["encoded"], summary["from_store"], summary["tagged"]) == (0, 8, 8)


def test_two_runs_on_one_out_the_second_is_refused_and_csv_cells_are_inert(tiny_model_dir: Path, tmp_path: Path
                                                                           ) -> None:  # fmt: skip
    import csv

    pictures = _pictures(tmp_path / "pics", 300)
    formula = tmp_path / "pics" / "=1+2.jpg"
    formula.write_bytes(pictures[0].read_bytes())
    out = tmp_path / "tags.csv"
    tag = ["tag", str(tmp_path / "pics"), "--labels", "red", "=green", "@blue", "--out", str(out),
           "--model", str(tiny_model_dir), "--templates", "photo", "--batch-size", "2", "--quiet"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "clipzero", *tag], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    lock = Path(f"{out}.lock")
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run(*tag)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode != 0 and "being written by another clipzero run" in second.stderr
    rows = read_results(out)
    assert len(rows) == 301 and len({r["image"] for r in rows}) == 301  # before: 1,600 rows for 800 images
    assert not lock.exists()
    with open(out, newline="", encoding="utf-8") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["image"] for c in cells if "1+2" in c["image"]] == [f"{formula}"]  # a path starts with "/": inert
    assert {c["label"] for c in cells} <= {"red", "'=green", "'@blue"}
    assert {r["label"] for r in rows} <= {"red", "=green", "@blue"}


def test_tag_fails_before_work_on_a_wrong_path_and_says_when_nothing_was_tagged(tiny_model_dir: Path,
                                                                                tmp_path: Path) -> None:  # fmt: skip
    base = ["--labels", "red", "blue", "--model", str(tiny_model_dir), "--templates", "photo", "--quiet"]
    missing = run("tag", str(tmp_path / "no" / "such" / "dir"), "--out", str(tmp_path / "a.jsonl"), *base)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr and "no/such/dir" in missing.stderr
    assert not (tmp_path / "a.jsonl").exists()  # refused before anything was opened or loaded
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "notes.txt").write_text("not a picture")
    nothing = run("tag", str(empty), "--out", str(tmp_path / "b.jsonl"), *base)
    assert nothing.returncode == 2 and "no images found under" in nothing.stderr
    assert "--recursive" in nothing.stderr and ".jpg" in nothing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.png", "b.jpg"):
        (broken / name).write_bytes(b"not an image")
    failed = run("tag", str(broken), "--out", str(tmp_path / "c.jsonl"), *base)
    assert failed.returncode == 1 and "failed 2" in failed.stderr  # every input failed: a script notices
    index = run("index", "add", str(tmp_path / "gone.png"), "--store", str(tmp_path / "store"), "--model",
                str(tiny_model_dir))  # fmt: skip
    assert index.returncode == 2 and "no such file or folder" in index.stderr


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_label_files_in_utf8_and_utf16_with_a_bom_are_read(tmp_path: Path, encoding: str) -> None:
    from clipzero.zeroshot import read_labels

    path = tmp_path / "labels.txt"
    path.write_text("红色圆形\nblue star\n# a comment\n", encoding=encoding)
    assert read_labels(path) == ["红色圆形", "blue star"]


def test_a_label_file_in_another_encoding_names_the_file_and_the_fix(tmp_path: Path) -> None:
    from clipzero.errors import LabelError
    from clipzero.zeroshot import read_labels

    path = tmp_path / "labels-gbk.txt"
    path.write_bytes("红色圆形\n蓝色星星\n".encode("gbk"))
    with pytest.raises(LabelError, match=r"labels-gbk\.txt is not UTF-8 .*save it as UTF-8"):
        read_labels(path)
    result = run("classify", str(EXAMPLES_DIR / "red-circle.png"), "--labels-file", str(path))
    assert result.returncode == 2 and "save it as UTF-8" in result.stderr and "Traceback" not in result.stderr
