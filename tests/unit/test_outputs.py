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
