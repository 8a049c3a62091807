"""Duplicate groups in a real store of the bundled model: exact copies, edited copies around the right image to keep
and named by their kind, hard negatives (the same scene with one object changed) never grouped, and every door (Python,
CLI, HTTP, web UI) giving the same groups."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from clipzero import EmbeddingStore, find_duplicates, load_model
from clipzero.synthetic.edits import EDITS, edit, hard_negative
from clipzero.synthetic.world import Scene, ShapeObject, render
from tests.serving import start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: What each edit must be named (relative to the original, which is kept).
EXPECTED_KINDS = {"half": ("resized",), "jpeg30": ("re-encoded",), "crop10": ("cropped",), "rotate3": ("turned",),
                  "brighter": ("edited",)}  # fmt: skip


def _lone(shape: str, colour: str, rgb: tuple[int, int, int], x: float = 0.5, y: float = 0.5, radius: float = 0.3,
          seed: int = 5) -> Scene:  # fmt: skip
    obj = ShapeObject(shape, colour, "large", x, y, radius, 0.0, rgb)
    return Scene((obj,), "noise", ((225, 225, 222), (225, 225, 222)), 192, seed=seed)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The eight example pictures (all different), every edit of two of them, a byte-identical copy of a third, a
    re-drawn look-alike of a fourth, and hard negatives: a green circle and a green square at one place on one
    background, the circle recoloured, the circle moved, another green circle elsewhere, and a three-object scene
    with one object recoloured, moved or reshaped."""
    folder = tmp_path_factory.mktemp("library")
    rng = random.Random(3)
    for picture in sorted(EXAMPLES.glob("*.png")):
        big = Image.open(picture).convert("RGB").resize((192, 192), Image.Resampling.LANCZOS)
        big.save(folder / picture.name)
        if picture.stem in ("red-circle", "blue-star"):
            for kind in EDITS:
                edit(big, kind, rng).save(folder / f"{picture.stem}-{kind}.png")
    shutil.copyfile(folder / "green-cross.png", folder / "green-cross-copy.png")
    from clipzero.synthetic.world import sample_scene

    look_alike = render(sample_scene(random.Random(11), size=192, n_objects=1, allowed=[("yellow", "heart")]))
    look_alike.save(folder / "yellow-heart-other.png")
    circle = _lone("circle", "green", (40, 165, 55))
    render(circle).save(folder / "hard-circle.png")
    render(replace(circle, objects=(replace(circle.objects[0], shape="square"),))).save(folder / "hard-square.png")
    render(replace(circle, objects=(replace(circle.objects[0], colour="blue", rgb=(35, 75, 215)),))).save(
        folder / "hard-circle-blue.png")
    render(replace(circle, objects=(replace(circle.objects[0], x=0.35),))).save(folder / "hard-circle-moved.png")
    render(_lone("circle", "green", (46, 160, 60), 0.45, 0.55, 0.25, seed=9)).save(folder / "hard-circle-other.png")
    scene = sample_scene(random.Random(21), size=192, n_objects=3)
    render(scene).save(folder / "scene.png")
    for kind in ("recolour", "move", "reshape"):
        render(hard_negative(scene, kind, random.Random(kind))).save(folder / f"scene-{kind}.png")
    store = tmp_path_factory.mktemp("store") / "store"
    with EmbeddingStore(store, load_model("clipzero-shapes")) as opened:
        report = opened.add(sorted(str(p) for p in folder.iterdir()))
        assert not report.failed
    return folder, store


def _groups(report: object) -> dict[tuple[str, str], set[str]]:
    return {(g.kind, Path(g.keep.path).name): {Path(m.path).name for m in g.members} for g in report.groups}  # type: ignore[attr-defined]


def test_edited_copies_group_around_the_original_named_by_kind(library: tuple[Path, Path]) -> None:
    _, store = library
    with EmbeddingStore(store) as opened:
        report = find_duplicates(opened)
    near = [g for g in report.groups if g.kind == "near"]
    for stem in ("red-circle", "blue-star"):
        expected = {f"{stem}.png", *(f"{stem}-{kind}.png" for kind in EDITS)}
        found = [g for g in near if f"{stem}.png" in {Path(m.path).name for m in g.members}]
        assert len(found) == 1 and {Path(m.path).name for m in found[0].members} == expected, (stem, near)
        group = found[0]
        assert Path(group.keep.path).name == f"{stem}.png"  # the largest and sharpest picture is kept
        for member in group.others:
            kind = Path(member.path).stem.split("-")[-1]
            assert member.match is not None and member.kinds == EXPECTED_KINDS[kind], (member.path, member.match)
        crop = next(m for m in group.others if m.path.endswith("-crop10.png"))
        assert crop.match is not None and 0.75 < crop.match.kept_area < 0.85  # 90% x 90% of the original
        turn = next(m for m in group.others if m.path.endswith("-rotate3.png"))
        assert turn.match is not None and 1.0 <= abs(turn.match.angle) <= 3.2
    assert len(near) == 2, [_groups(report)]  # nothing else: not the look-alike, not a hard negative


def test_hard_negatives_are_never_grouped(library: tuple[Path, Path]) -> None:
    """A circle and a square of one colour at one place, a recoloured or moved object, another circle of the same
    colour: candidates by their vectors at the default cut, each kept apart by the pixel verification."""
    folder, store = library
    hard = {p.name for p in folder.glob("hard-*.png")} | {p.name for p in folder.glob("scene*.png")}
    with EmbeddingStore(store) as opened:
        loose = find_duplicates(opened, verify=False)
        checked = find_duplicates(opened)
        circle, square = opened.get(folder / "hard-circle.png"), opened.get(folder / "hard-square.png")
    assert circle is not None and square is not None and float(circle.vector @ square.vector) >= 0.4  # a candidate
    mixed = [names for g in loose.groups if len(names := {Path(m.path).name for m in g.members} & hard) > 1]
    assert mixed, "the embedding cut alone kept every hard negative apart: the test would prove nothing"
    for group in checked.groups:
        names = {Path(m.path).name for m in group.members}
        assert len(names & hard) <= 1, names


def test_a_changed_scene_lines_up_and_differs(library: tuple[Path, Path]) -> None:
    """The verifier's three answers: a match; "they line up and differ" for a changed scene (which lets dedup skip
    the scene's other copies); "no alignment" for different pictures."""
    from clipzero.dedup import _look
    from clipzero.samepicture import Match, decide

    folder, _ = library
    pictures = {p.stem: _look(str(p)) for p in folder.glob("*.png")}
    assert isinstance(decide(pictures["red-circle"], pictures["red-circle-jpeg30"]), Match)
    for kind in ("recolour", "reshape"):  # a moved object may leave too little in place to line up: a plain no
        assert decide(pictures["scene"], pictures[f"scene-{kind}"]) is True, kind
    for first, second in (("scene", "scene-move"), ("hard-circle", "hard-square")):  # a plain no, but a no
        assert not isinstance(decide(pictures[first], pictures[second]), Match), second
    assert decide(pictures["red-circle"], pictures["blue-star"]) is False


def test_kinds_are_named_right_on_pictures_that_mislead() -> None:
    """A picture whose red channel is white everywhere (no pixel left unclipped to fit a brightness on): its brighter
    copy is edited, its JPEG copy only re-encoded. A low-contrast picture turned by 1.5 and 2.5 degrees: the plain
    frame passes it, and the turn is still named, with its angle."""
    import io

    import numpy as np
    from PIL import ImageDraw

    from clipzero.samepicture import Match, Picture, decide, picture

    def look(image: Image.Image) -> Picture:
        return picture(image, *image.size)

    rng = np.random.default_rng(4)
    pixels = np.zeros((192, 192, 3), np.uint8)
    pixels[..., 0], pixels[..., 2] = 255, 140
    pixels[..., 1] = (190 + 20 * rng.random((192, 192))).astype(np.uint8)
    red = Image.fromarray(pixels)
    ImageDraw.Draw(red).ellipse((30, 40, 100, 110), fill=(255, 90, 40))
    ImageDraw.Draw(red).rectangle((110, 100, 170, 170), fill=(255, 230, 60))
    saved = io.BytesIO()
    red.save(saved, "JPEG", quality=30)
    brighter = decide(look(red), look(edit(red, "brighter", random.Random(1))))
    jpeg = decide(look(red), look(Image.open(io.BytesIO(saved.getvalue())).convert("RGB")))
    assert isinstance(brighter, Match) and brighter.kinds == ("edited",), brighter
    assert isinstance(jpeg, Match) and jpeg.kinds == ("re-encoded",), jpeg

    low = Image.new("RGB", (192, 192), (120, 125, 130))
    ImageDraw.Draw(low).ellipse((40, 30, 120, 110), fill=(140, 150, 145))
    ImageDraw.Draw(low).rectangle((100, 110, 170, 175), fill=(105, 110, 125))
    low = Image.fromarray(np.clip(np.asarray(low, np.int16) + rng.integers(-6, 7, (192, 192, 3)), 0, 255).astype("u1"))
    for angle in (1.5, 2.5):
        copy = low.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(120, 125, 130))
        turned = decide(look(low), look(copy))
        assert isinstance(turned, Match) and turned.kinds == ("turned",), (angle, turned)
        assert abs(turned.angle - angle) < 0.3, (angle, turned)


def test_kinds_choose_which_copies_are_listed(library: tuple[Path, Path]) -> None:
    _, store = library
    with EmbeddingStore(store) as opened:
        safe = find_duplicates(opened, kinds=["exact", "resized", "re-encoded"])
        with pytest.raises(Exception, match="not a kind of copy"):
            find_duplicates(opened, kinds=["moved"])
    members = {Path(m.path).name for g in safe.groups for m in g.others}
    assert {"red-circle-half.png", "blue-star-jpeg30.png", "green-cross-copy.png"} <= members or \
        {"red-circle-half.png", "blue-star-jpeg30.png", "green-cross.png"} <= members  # fmt: skip
    assert not any(name.endswith(("-crop10.png", "-rotate3.png", "-brighter.png")) for name in members), members


def test_a_stop_ends_the_verification(library: tuple[Path, Path]) -> None:
    """How a server ends a dedup past its deadline: the hook raises between batches, and nothing goes on."""
    _, store = library
    calls: list[int] = []

    def stop() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise TimeoutError("past the deadline")

    with EmbeddingStore(store) as opened, pytest.raises(TimeoutError, match="past the deadline"):
        find_duplicates(opened, stop=stop)
    assert len(calls) == 2


def test_processes_and_threads_decide_alike(library: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux the pictures are loaded and the pairs decided in forked processes (the pixels in memory they share,
    none sent): the same groups, kinds and kept images as one thread, also for two dedups at once, and no process left
    behind, also when a stop ends the work midway."""
    import multiprocessing

    import clipzero.dedupwork as work

    _, store = library
    forked: list[int] = []

    class Counted(work.ProcessPoolExecutor):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            forked.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(work, "ProcessPoolExecutor", Counted)
    with EmbeddingStore(store) as opened:
        threads = find_duplicates(opened, workers=1)
        assert not forked
        processes = find_duplicates(opened, workers=2)
        assert forked == ([1] if sys.platform.startswith("linux") else [])
        assert _summary(processes.to_dict()["groups"]) == _summary(threads.to_dict()["groups"])
        assert [g.keep.path for g in processes.groups] == [g.keep.path for g in threads.groups]
        calls: list[int] = []

        def stop() -> None:
            calls.append(1)
            if len(calls) == 4:
                raise TimeoutError("past the deadline")

        with pytest.raises(TimeoutError, match="past the deadline"):
            find_duplicates(opened, workers=2, stop=stop)
    assert not multiprocessing.active_children()

    def separately(_: int) -> set[tuple[str, str, str, str]]:  # two dedups at once, each forking its own workers
        with EmbeddingStore(store) as mine:
            return _summary(find_duplicates(mine, workers=2).to_dict()["groups"])

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(separately, range(2))) == [_summary(threads.to_dict()["groups"])] * 2
    assert not multiprocessing.active_children()


def test_a_dedup_after_opencv_ran_on_its_threads_finishes(library: tuple[Path, Path]) -> None:
    """The workers fork with OpenCV's thread pool stopped: a fork that found it running would hang in any worker
    that touched it (found in review: setting OpenCV's threads inside each worker hung the test suite)."""
    _, store = library
    script = (
        "import sys, numpy as np, cv2\n"
        "from clipzero import EmbeddingStore, find_duplicates\n"
        "cv2.setNumThreads(2)\n"
        "big = np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), np.uint8)\n"
        "for _ in range(3): cv2.GaussianBlur(big, (31, 31), 5)\n"
        "with EmbeddingStore(sys.argv[1]) as opened:\n"
        "    report = find_duplicates(opened, workers=2)\n"
        "print(len(report.groups), cv2.getNumThreads())\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(store)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    groups, threads = run.stdout.split()
    with EmbeddingStore(store) as opened:
        assert int(groups) == len(find_duplicates(opened, workers=1).groups)
    assert threads == "2"  # OpenCV's own setting is given back


def test_the_same_bytes_are_an_exact_group(library: tuple[Path, Path]) -> None:
    _, store = library
    with EmbeddingStore(store) as opened:
        report = find_duplicates(opened, exact_only=True)
    assert _groups(report) == {("exact", "green-cross-copy.png"): {"green-cross.png", "green-cross-copy.png"}} or \
        _groups(report) == {("exact", "green-cross.png"): {"green-cross.png", "green-cross-copy.png"}}  # fmt: skip
    assert report.redundant == 1


def _summary(groups: list[dict]) -> set[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    """(group kind, kept file, member file, its kinds) for every member but the kept one."""
    return {(g["kind"], Path(g["keep"]).name, Path(m["path"]).name, "+".join(m.get("match", {}).get("kinds", [])))
            for g in groups for m in g["members"] if m["path"] != g["keep"]}  # fmt: skip


def test_every_door_gives_the_same_groups(library: tuple[Path, Path], tmp_path: Path) -> None:
    """Python, the CLI (--json, --out .json and .csv), the HTTP API and the web UI: one set of groups and kinds."""
    from gradio_client import Client

    _, store = library
    with EmbeddingStore(store) as opened:
        python = _summary(find_duplicates(opened).to_dict()["groups"])
    run = subprocess.run([sys.executable, "-m", "clipzero", "dedup", "--store", str(store), "--json", "--out",
                          str(tmp_path / "groups.csv")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert _summary(json.loads(run.stdout)["groups"]) == python
    rows = list(csv.DictReader((tmp_path / "groups.csv").open()))
    assert {(r["kind"], Path(r["keep"]).name, Path(r["path"]).name, "" if r["kind"] == "exact" else r["match"])
            for r in rows if r["is_keep"] == "False"} == {(k, keep, p, m) for k, keep, p, m in python}  # fmt: skip
    process, url = start_server("--store", str(store), "--api-key", "k", home=tmp_path / "home")
    try:
        reply = httpx.post(f"{url}/v1/dedup", json={}, headers={"Authorization": "Bearer k"}, timeout=300)
        assert reply.status_code == 200, reply.text
        assert _summary(reply.json()["groups"]) == python
        client = Client(url, headers={"Authorization": "Bearer k"}, verbose=False)
        summary, html = client.predict(0.4, True, ["exact", "resized", "re-encoded", "cropped", "turned", "edited"],
                                       api_name="/dedup")  # fmt: skip
    finally:
        stop_server(process)
    assert f"{len(reply.json()['groups'])} group(s)" in summary
    for _, _, _, kinds in python:
        assert kinds in html  # each member's kinds are shown beside it
    assert html.count('class="dedup-group"') == len(reply.json()["groups"])


def test_the_cli_prints_kinds_and_refuses_bad_requests(library: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = library
    run = subprocess.run([sys.executable, "-m", "clipzero", "dedup", "--store", str(store)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "3 group(s) (1 exact, 2 near)" in run.stdout and "could go" in run.stdout
    assert "cropped (kept 8" in run.stdout and "turned (turned " in run.stdout and "  resized  " in run.stdout
    for bad, message in ((["--threshold", "1.5"], "--threshold 1.5"), (["--kinds", "moved"], "--kinds moved"),
                         (["--out", str(tmp_path / "g.txt")], "use a .json or .csv")):  # fmt: skip
        refused = subprocess.run([sys.executable, "-m", "clipzero", "dedup", "--store", str(store), *bad],
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
