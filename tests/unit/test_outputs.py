"""Result files: rows read back while a run writes them or after it was killed mid-row."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipzero.outputs import ResultWriter, read_results


def _row(i: int, label: str = "red") -> dict:
    predictions = [
        {"label": label, "score": 0.75, "similarity": 0.5},
        {"label": "blue", "score": 0.25, "similarity": 0.1},
    ]
    return {"image": f"pics/{i}.png", "sha256": f"{i:064d}", "label": label, "predictions": predictions}


def _write(path: Path, rows: list[dict]) -> None:
    writer = ResultWriter(path)
    for row in rows:
        writer.write(row)
    writer.close()


@pytest.mark.parametrize("ending", ["jsonl", "csv"])
def test_a_row_cut_short_is_not_read_and_resume_appends_cleanly(tmp_path: Path, ending: str) -> None:
    out = tmp_path / f"tags.{ending}"
    _write(out, [_row(i) for i in range(3)])
    whole = out.read_bytes()
    last_row_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    for cut in (last_row_start + 1, last_row_start + 40, len(whole) - 2):
        out.write_bytes(whole[:cut])  # a run killed in the middle of writing its third row
        assert [r["image"] for r in read_results(out)] == ["pics/0.png", "pics/1.png"]
    resumed = ResultWriter(out)
    assert resumed.done == {"pics/0.png", "pics/1.png"}
    resumed.write(_row(2))
    resumed.write(_row(3))
    resumed.close()
    rows = read_results(out)
    assert [r["image"] for r in rows] == [f"pics/{i}.png" for i in range(4)]
    assert all(r["predictions"][0]["label"] == "red" and r["score"] == 0.75 for r in rows)


def test_a_label_with_a_unicode_line_separator_stays_one_row(tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    label = "red\u2028circle\x85"  # str.splitlines() would split inside this JSON string
    _write(out, [_row(0, label), _row(1, label)])
    rows = read_results(out)
    assert [r["label"] for r in rows] == [label, label]
    assert ResultWriter(out).done == {"pics/0.png", "pics/1.png"}


def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_read_back_exactly(tmp_path: Path) -> None:
    import csv

    out = tmp_path / "tags.csv"
    names = ["=HYPERLINK(\"http://x\").png", "+1.png", "-2.png", "@SUM(A1).png", "\tx.png", "'quoted.png", "ok.png"]
    writer = ResultWriter(out)
    for i, name in enumerate(names):
        writer.write({**_row(i, label="=cmd|' /C calc'!A0"), "image": name})
    writer.close()
    with open(out, newline="", encoding="utf-8") as handle:
        cells = [row for row in csv.DictReader(handle)]
    assert [row["image"] for row in cells] == ["'" + n for n in names[:-1]] + ["ok.png"]
    assert all(row["label"] == "'=cmd|' /C calc'!A0" for row in cells)
    assert [row["image"] for row in read_results(out)] == names  # exactly as written
    assert {row["label"] for row in read_results(out)} == {"=cmd|' /C calc'!A0"}
    writer = ResultWriter(out)  # resume: the escaped names are the same images
    assert writer.done == set(names)
    writer.close()


def test_a_second_writer_on_one_output_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    from clipzero.errors import ConfigError

    out = tmp_path / "tags.csv"
    first = ResultWriter(out)
    with pytest.raises(ConfigError, match="being written by another clipzero run"):
        ResultWriter(out)
    first.write(_row(1))
    first.close()
    assert not (tmp_path / "tags.csv.lock").exists()
    second = ResultWriter(out)
    second.write(_row(2))
    second.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines.count(lines[0]) == 1  # one header, two rows


def test_without_following_links_a_linked_side_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    from clipzero.errors import ConfigError

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    out = tmp_path / "tags.jsonl"
    (tmp_path / "tags.jsonl.errors.jsonl").symlink_to(outside)
    with pytest.raises(ConfigError, match="symbolic link"):
        ResultWriter(out, follow_links=False)
    assert outside.read_text() == "keep me\n" and not (tmp_path / "tags.jsonl.lock").exists()
    writer = ResultWriter(out)  # the CLI's writer follows a link the user made on purpose
    writer.close()


@pytest.mark.parametrize("ending", ["jsonl", "csv"])
def test_scores_are_written_with_the_digits_float32_has(tmp_path: Path, ending: str) -> None:
    import re

    import numpy as np

    score = float(np.float32(0.8634567))  # 0.8634567260742188 as a Python float
    row = _row(0)
    row["predictions"][0].update(score=score, similarity=float(np.float32(0.3141592)))
    out = tmp_path / f"r.{ending}"
    _write(out, [row])
    text = out.read_text()
    assert "0.8634567260742188" not in text and "0.863457" in text and "0.314159" in text
    assert not re.search(r"\d\.\d{7,}", text), text
    back = read_results(out)[0]
    assert abs(back["score"] - score) < 1e-6 and back["predictions"][1]["score"] == 0.25


def test_the_long_multi_label_csv_has_a_row_per_image_and_label_and_resumes(tmp_path: Path) -> None:
    import csv

    from clipzero.errors import ConfigError

    out = tmp_path / "long.csv"
    tagged = _row(0)
    tagged["labels"] = [{"label": "=red; circle", "score": 0.9, "similarity": 0.7, "region": [0.0, 0.0, 0.5, 0.5]},
                        {"label": "blue", "score": 0.6, "similarity": 0.6, "region": [0.0, 0.0, 1.0, 1.0]}]  # fmt: skip
    nothing = _row(1)
    nothing["labels"] = []
    writer = ResultWriter(out, multi_label=True, long=True)
    writer.write(tagged)
    writer.write(nothing)
    writer.close()
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], r["label"]) for r in rows] == [("pics/0.png", "'=red; circle"), ("pics/0.png", "blue"),
                                                        ("pics/1.png", "")]  # fmt: skip
    back = read_results(out)
    assert [r["label"] for r in back] == ["=red; circle", None]
    assert back[0]["labels"][0]["region"] == [0.0, 0.0, 0.5, 0.5] and back[1]["labels"] == []
    again = ResultWriter(out, multi_label=True, long=True)
    assert again.done == {"pics/0.png", "pics/1.png"}
    again.close()
    with pytest.raises(ConfigError, match="cannot resume"):
        ResultWriter(out, multi_label=True)  # the other layout's columns
    with pytest.raises(ConfigError, match="long layout"):
        ResultWriter(tmp_path / "x.jsonl", multi_label=True, long=True)
