"""The bundled clipzero-shapes model: offline, really zero-shot, and the `make demo` quickstart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipzero import load_model
from clipzero.synthetic.evaluate import shapes_accuracy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes() -> object:
    os.environ["HF_HUB_OFFLINE"] = "1"  # no network may be asked for
    try:
        return load_model("clipzero-shapes", device="cpu")
    finally:
        del os.environ["HF_HUB_OFFLINE"]


def test_loads_offline_with_a_stable_id(shapes: object) -> None:
    assert shapes.id.startswith("clipzero-shapes@sha256:")  # type: ignore[attr-defined]
    assert shapes.arch == "clipzero-shapes-vit"  # type: ignore[attr-defined]
    weights = ROOT / "clipzero" / "assets" / "clipzero-shapes" / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024


def test_seen_combinations_sanity_set(shapes: object) -> None:
    """Two images of every seen colour x shape (108), against all 64 labels: at least 90% right."""
    accuracy = shapes_accuracy(shapes, split="seen", language="en", templates="photo", per_combo=2, seed=99)  # type: ignore[arg-type]
    assert accuracy.total == 108
    assert accuracy.value >= 0.90, accuracy


def test_chinese_labels_sanity_set(shapes: object) -> None:
    accuracy = shapes_accuracy(shapes, split="seen", language="zh", templates="photo-zh", per_combo=2, seed=98)  # type: ignore[arg-type]
    assert accuracy.value >= 0.85, accuracy


def test_make_demo_prints_correct_answers() -> None:
    """Runs the Makefile's own demo recipe with this interpreter's environment."""
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        ["make", "-s", "demo", f"BIN={bin_dir}", "STAMP="], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    english, chinese = result.stdout.split("\n\n", 1)
    examples = sorted((ROOT / "examples").glob("*.png"))
    assert len(examples) >= 6
    from clipzero.synthetic.world import COLOURS, SHAPES

    for path in examples:
        colour, shape = path.stem.split("-")
        line_en = next(line for line in english.splitlines() if line.startswith(f"examples/{path.name}"))
        assert line_en.split()[1:3] == [colour, shape], line_en
        line_zh = next(line for line in chinese.splitlines() if line.startswith(f"examples/{path.name}"))
        assert line_zh.split()[1] == COLOURS[colour][0] + SHAPES[shape][0], line_zh


def test_store_finds_a_known_image_by_embedding_and_by_text(shapes: object, tmp_path: Path) -> None:
    """With the bundled model: an image is its own best match, and a text describing it finds it first."""
    import random

    from clipzero import EmbeddingStore
    from clipzero.synthetic import render, sample_scene

    rng = random.Random(21)
    combos = [
        ("red", "circle"),
        ("blue", "star"),
        ("green", "cross"),
        ("yellow", "heart"),
        ("orange", "square"),
        ("pink", "diamond"),
    ]
    paths = []
    for colour, shape in combos:
        path = tmp_path / f"{colour}-{shape}.png"
        render(sample_scene(rng, size=96, n_objects=1, allowed=[(colour, shape)])).save(path)
        paths.append(path)
    store = EmbeddingStore(tmp_path / "store", shapes)  # type: ignore[arg-type]
    assert store.add(paths).encoded == len(paths)
    for path, (colour, shape) in zip(paths, combos):
        own = store.get(path)
        assert own is not None
        assert store.search(own.vector, top_k=1)[0].path == str(path)
        assert store.search(f"a photo of a {colour} {shape}.", top_k=1)[0].path == str(path)
