"""Chinese labels: their own templates when no set was chosen (mixed lists included), a warning naming a model that
reads Chinese when the text tower is English-only, and the models list that marks them."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from clipzero import ClipzeroWarning, ZeroShotClassifier, load_model
from clipzero.languages import CHINESE_MODELS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def shapes():  # type: ignore[no-untyped-def]
    return load_model("clipzero-shapes")


def test_mixed_labels_take_their_own_languages_templates(shapes) -> None:  # type: ignore[no-untyped-def]
    labels = ["red circle", "蓝色星星", "green cross", "黄色心形"]
    mixed = ZeroShotClassifier(shapes, labels)  # no template set chosen: auto
    english = ZeroShotClassifier(shapes, ["red circle", "green cross"], templates="ensemble-en")
    chinese = ZeroShotClassifier(shapes, ["蓝色星星", "黄色心形"], templates="ensemble-zh")
    assert np.allclose(mixed.weights[[0, 2]], english.weights, atol=1e-6)
    assert np.allclose(mixed.weights[[1, 3]], chinese.weights, atol=1e-6)
    assert mixed.template_note.startswith("2 Chinese label(s) take the ensemble-zh templates, the other 2")
    found = mixed.classify([str(EXAMPLES / n) for n in ("red-circle.png", "blue-star.png", "yellow-heart.png")])
    assert [p.label for p in found] == ["red circle", "蓝色星星", "黄色心形"]
    chosen = ZeroShotClassifier(shapes, labels, templates="ensemble-en")  # a chosen set holds for every label
    assert chosen.label_templates == {} and chosen.template_note == ""
    assert not np.allclose(chosen.weights[1], mixed.weights[1], atol=1e-3)


def test_chinese_labels_alone_switch_the_set_and_the_cli_says_so() -> None:
    run = subprocess.run([sys.executable, "-m", "clipzero", "classify", str(EXAMPLES / "blue-star.png"),
                          "--labels-file", str(EXAMPLES / "labels-zh.txt"), "--model", "clipzero-shapes", "--json"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Chinese labels: the ensemble-zh templates (no template set was given)" in run.stderr
    assert json.loads(run.stdout)[0]["label"] == "蓝色星星"
    chosen = subprocess.run([sys.executable, "-m", "clipzero", "classify", str(EXAMPLES / "blue-star.png"),
                             "--labels-file", str(EXAMPLES / "labels-zh.txt"), "--model", "clipzero-shapes",
                             "--templates", "photo-zh"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert chosen.returncode == 0 and "no template set was given" not in chosen.stderr


def test_an_english_only_tower_warns_once_and_names_a_chinese_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.hf_models import save_tiny

    english = load_model(str(save_tiny("clip", tmp_path / "clip", seed=5)))  # a model no other test warned about
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ZeroShotClassifier(english, ["red circle", "blue star"], templates="photo")  # English labels: fine
        ZeroShotClassifier(english, ["红色圆形", "蓝色星星"])
        ZeroShotClassifier(english, ["绿色十字"])  # once per model
    said = [str(w.message) for w in caught if issubclass(w.category, ClipzeroWarning)]
    assert len(said) == 1 and "English-only text tower" in said[0] and CHINESE_MODELS[0].spec in said[0]
    chinese = load_model(str(save_tiny("chinese_clip", tmp_path / "chinese")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ZeroShotClassifier(chinese, ["红色圆形", "蓝色星星"])
        ZeroShotClassifier(load_model("clipzero-shapes"), ["红色圆形", "蓝色星星"])
    assert not [w for w in caught if issubclass(w.category, ClipzeroWarning)]


def test_the_models_list_marks_chinese_readers_with_their_figures() -> None:
    run = subprocess.run([sys.executable, "-m", "clipzero", "models", "--chinese", "--json"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    entries = {e["spec"]: e for e in json.loads(run.stdout)}
    assert all(e["chinese"] for e in entries.values())
    assert "48.3%" in entries["hf-transformers:OFA-Sys/chinese-clip-vit-base-patch16"]["description"]
    assert "55.7%" in entries["xlm-roberta-large-ViT-H-14:frozen_laion5b_s13b_b90k"]["description"]
    assert "ViT-B-32-256:datacomp_s34b_b86k" not in entries  # the English default does not read Chinese
