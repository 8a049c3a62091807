"""Duplicate groups in a real store of the bundled model: exact copies, edited copies around the right image to keep,
merely similar pictures kept apart, and the CLI's report files."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clipzero import EmbeddingStore, find_duplicates, load_model
from clipzero.synthetic.edits import EDITS, edit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The eight example pictures (all different), every edit of two of them, a byte-identical copy of a third, and
    a re-drawn look-alike of a fourth: another picture of the same colour and shape."""
    folder = tmp_path_factory.mktemp("library")
    rng = random.Random(3)
    for picture in sorted(EXAMPLES.glob("*.png")):
        big = Image.open(picture).convert("RGB").resize((192, 192), Image.Resampling.LANCZOS)
        big.save(folder / picture.name)
        if picture.stem in ("red-circle", "blue-star"):
            for kind in EDITS:
                edit(big, kind, rng).save(folder / f"{picture.stem}-{kind}.png")
    shutil.copyfile(folder / "green-cross.png", folder / "green-cross-copy.png")
    from clipzero.synthetic.world import render, sample_scene

    look_alike = render(sample_scene(random.Random(11), size=192, n_objects=1, allowed=[("yellow", "heart")]))
    look_alike.save(folder / "yellow-heart-other.png")
    store = tmp_path_factory.mktemp("store") / "store"
    with EmbeddingStore(store, load_model("clipzero-shapes")) as opened:
        report = opened.add(sorted(str(p) for p in folder.iterdir()))
        assert not report.failed
    return folder, store


def _groups(report: object) -> dict[tuple[str, str], set[str]]:
    return {(g.kind, Path(g.keep.path).name): {Path(m.path).name for m in g.members} for g in report.groups}  # type: ignore[attr-defined]


def test_edited_copies_group_around_the_original(library: tuple[Path, Path]) -> None:
    _, store = library
    with EmbeddingStore(store) as opened:
        report = find_duplicates(opened)
    groups = _groups(report)
    near = {keep: members for (kind, keep), members in groups.items() if kind == "near"}
    for stem in ("red-circle", "blue-star"):
        expected = {f"{stem}.png", *(f"{stem}-{kind}.png" for kind in EDITS)}
        found = [members for members in near.values() if f"{stem}.png" in members]
        assert found == [expected], (stem, near)
        keep = next(k for k, m in near.items() if m == expected)
        assert keep not in (f"{stem}-half.png", f"{stem}-crop10.png"), keep  # the largest picture is kept
    assert len(near) == 2, near  # nothing else is a near-duplicate: not the look-alike, not the other examples
    for group in report.groups:
        assert group.keep.similarity == pytest.approx(1.0, abs=1e-5)
        assert all(-1.0 <= m.similarity <= 1.0 for m in group.others)


def test_the_same_bytes_are_an_exact_group(library: tuple[Path, Path]) -> None:
    _, store = library
    with EmbeddingStore(store) as opened:
        report = find_duplicates(opened, exact_only=True)
    assert _groups(report) == {("exact", "green-cross-copy.png"): {"green-cross.png", "green-cross-copy.png"}} or \
        _groups(report) == {("exact", "green-cross.png"): {"green-cross.png", "green-cross-copy.png"}}  # fmt: skip
    assert report.redundant == 1


def test_one_embedding_cut_alone_groups_merely_similar_pictures(library: tuple[Path, Path]) -> None:
    """Why candidates are checked on their pixels: at a cut low enough to catch every edited copy, the embedding
    alone puts different pictures together; the check keeps them apart, the look-alike included."""
    folder, store = library
    originals = {p.name for p in EXAMPLES.glob("*.png")}
    with EmbeddingStore(store) as opened:
        loose = find_duplicates(opened, 0.4, verify=False)
        checked = find_duplicates(opened, 0.4)
        heart, other = opened.get(folder / "yellow-heart.png"), opened.get(folder / "yellow-heart-other.png")
    assert heart is not None and other is not None and float(heart.vector @ other.vector) >= 0.4  # a candidate pair
    mixed = [names for g in loose.groups if len(names := {Path(m.path).name for m in g.members} & originals) > 1]
    assert mixed, "the embedding cut alone kept every picture apart"
    for group in checked.groups:
        names = {Path(m.path).name for m in group.members}
        assert len(names & originals) == 1 and "yellow-heart-other.png" not in names, names


def test_the_cli_writes_groups_as_json_and_csv(library: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = library
    for name in ("groups.json", "groups.csv"):
        run = subprocess.run([sys.executable, "-m", "clipzero", "dedup", "--store", str(store), "--out",
                              str(tmp_path / name)], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "3 group(s) (1 exact, 2 near)" in run.stdout and "could go" in run.stdout
    data = json.loads((tmp_path / "groups.json").read_text())
    assert [g["kind"] for g in data["groups"]] == ["exact", "near", "near"]
    assert data["redundant"] == 1 + 2 * len(EDITS)
    rows = list(csv.DictReader((tmp_path / "groups.csv").open()))
    assert len(rows) == 2 + 2 * (1 + len(EDITS))
    assert sum(row["is_keep"] == "True" for row in rows) == 3
    bad = subprocess.run([sys.executable, "-m", "clipzero", "dedup", "--store", str(store), "--threshold", "1.5"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--threshold 1.5" in bad.stderr
