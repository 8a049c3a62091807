"""Video files: frames sampled every few seconds and at cuts, tagged with their times, summarised per video,
resumed, stored and found by search; broken videos and a missing extra reported like bad images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.media import write_video

av = pytest.importorskip("av")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABELS = ["red circle", "blue star", "green cross"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of a red circle, then a cut to 3 s of a blue star (10 frames/s)."""
    red, blue = Image.open(EXAMPLES / "red-circle.png"), Image.open(EXAMPLES / "blue-star.png")
    return write_video([(red, 3.0), (blue, 3.0)], tmp_path_factory.mktemp("video") / "clip.mp4")


def _tag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clipzero", "tag", *args, "--labels-file", str(EXAMPLES /
                           "labels-en.txt"), "--model", "clipzero-shapes", "--templates", "photo", "-q"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_frames_every_two_seconds_and_at_the_cut(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    run = _tag(str(clip), "--out", str(out))
    assert run.returncode == 0, run.stderr
    rows = _rows(out)
    frames = {r["image"]: r["label"] for r in rows if "#t=" in r["image"]}
    assert frames == {f"{clip}#t=0.00": "red circle", f"{clip}#t=2.00": "red circle",
                      f"{clip}#t=3.00": "blue star", f"{clip}#t=4.00": "blue star"}  # fmt: skip
    summary = rows[-1]
    assert summary["image"] == str(clip) and summary["video"] == {"frames": 4, "duration_s": 5.9}
    shares = {p["label"]: (p["score"], p["frames"], p["first"], p["last"]) for p in summary["predictions"]}
    assert shares == {"red circle": (0.5, 2, 0.0, 2.0), "blue star": (0.5, 2, 3.0, 4.0)}
    assert "frames of 1 videos" in run.stderr


def test_every_and_no_scenes_change_the_sampling(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    assert _tag(str(clip), "--out", str(out), "--every", "2.5", "--no-scenes").returncode == 0
    text = out.read_text()
    assert [f"#t={t}" in text for t in ("0.00", "2.50", "5.00", "3.00")] == [True, True, True, False]
    assert _tag(str(clip), "--out", str(tmp_path / "x.jsonl"), "--every", "0").returncode == 2


def test_a_stopped_video_goes_on_from_its_next_frame(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    assert _tag(str(clip), "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n")  # stopped after two frames: no later frame, no summary
    again = _tag(str(clip), "--out", str(out), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["tagged"] == 2  # only the frames at 3 and 4 s
    rows = _rows(out)
    assert len(rows) == 5 and len({r["image"] for r in rows}) == 5
    assert rows[-1]["video"]["frames"] == 4  # the summary counts the frames of both runs


def test_frames_are_stored_and_found_with_their_time(clip: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    add = subprocess.run([sys.executable, "-m", "clipzero", "index", "add", str(clip), "--store", str(store),
                          "--model", "clipzero-shapes", "-q"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert add.returncode == 0 and "encoded 4" in add.stdout, add.stdout + add.stderr
    found = subprocess.run([sys.executable, "-m", "clipzero", "search", "a blue star", "--store", str(store), "-k",
                            "2", "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    hits = json.loads(found.stdout)
    assert [(h["video"], h["time"]) for h in hits] in ([(str(clip), 3.0), (str(clip), 4.0)],
                                                       [(str(clip), 4.0), (str(clip), 3.0)])  # fmt: skip
    again = subprocess.run([sys.executable, "-m", "clipzero", "index", "add", str(clip), "--store", str(store), "-q"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "unchanged 1" in again.stdout
    prune = subprocess.run([sys.executable, "-m", "clipzero", "index", "prune", "--store", str(store)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "pruned 0 path(s)" in prune.stdout  # frames are kept while their video is there


def test_a_video_whose_frames_all_fail_still_gets_its_summary(clip: Path) -> None:
    from clipzero.tagging import TagFailure
    from clipzero.video import VideoTracker

    tracker = VideoTracker()
    frames = list(tracker.sources([str(clip)]))
    assert len(frames) == 4 and list(tracker.finished()) == []  # nothing handed back yet: not finished
    for frame in frames:
        tracker.note(TagFailure(frame.name, "could not be encoded"))
    [(video, row)] = list(tracker.finished())
    assert video == str(clip) and isinstance(row, dict)
    assert row["video"]["frames"] == 0 and row["label"] is None and row["predictions"] == []


def test_two_copies_of_a_video_are_one_exact_group(clip: Path, tmp_path: Path) -> None:
    from clipzero import EmbeddingStore, find_duplicates, load_model

    copy = tmp_path / "copy.mp4"
    copy.write_bytes(clip.read_bytes())
    with EmbeddingStore(tmp_path / "store", load_model("clipzero-shapes")) as store:
        store.add([str(clip), str(copy)])
        report = find_duplicates(store)
    assert [(g.kind, sorted(m.path for m in g.members)) for g in report.groups] == [
        ("exact", sorted([str(clip.resolve()), str(copy.resolve())]))
    ]


def test_broken_videos_are_reported_like_bad_images(clip: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video at all" * 10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    out = tmp_path / "tags.jsonl"
    run = _tag(str(fake), str(cut), str(EXAMPLES / "green-cross.png"), "--out", str(out))
    assert run.returncode == 0, run.stderr
    errors = _rows(Path(str(out) + ".errors.jsonl"))
    assert [e["image"] for e in errors if e["image"] == str(fake)] == [str(fake)]
    assert "not a readable video" in next(e["error"] for e in errors if e["image"] == str(fake))
    rows = {r["image"]: r for r in _rows(out)}
    assert rows[str(EXAMPLES / "green-cross.png")]["label"] == "green cross"  # the rest goes on
    if str(cut) in rows:  # a cut file keeps the frames before the break; it says so when it breaks
        assert rows[str(cut)]["video"]["frames"] >= 1
    else:
        assert any(e["image"] == str(cut) for e in errors)


_WITHOUT_AV = """
import sys
sys.modules["av"] = None  # as if the video extra were not installed
from clipzero.video import sample_frames
from clipzero import ImageError
try:
    list(sample_frames(sys.argv[1]))
except ImageError as exc:
    print(exc)
"""


def test_without_the_extra_a_video_says_what_to_install(clip: Path) -> None:
    run = subprocess.run([sys.executable, "-c", _WITHOUT_AV, str(clip)], capture_output=True, text=True, timeout=60)
    assert "clip.mp4" in run.stdout and "pip install 'clipzero[video]'" in run.stdout, run.stdout + run.stderr
