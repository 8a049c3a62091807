"""The shapes world: deterministic, captions agree with what is drawn, held-out combinations never appear."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import numpy as np
import pytest

from clipzero.synthetic import COLOURS, HELD_OUT, SHAPES, Style, all_combinations, render, sample_scene
from clipzero.synthetic.captions import caption


def test_deterministic_from_seed() -> None:
    def make(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        return [render(sample_scene(rng, style=Style(noise=10, texture=True))).tobytes() for _ in range(20)]

    assert make(3) == make(3)
    assert make(3) != make(4)


def test_enough_shapes_colours_and_a_held_out_split() -> None:
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8
    assert 0.12 <= len(HELD_OUT) / len(all_combinations()) <= 0.18
    rng = random.Random(0)
    seen = {(o.colour, o.shape) for _ in range(3000) for o in sample_scene(rng).objects}
    assert not seen & HELD_OUT
    assert seen == set(all_combinations()) - HELD_OUT  # every other combination does appear


def test_drawn_colour_at_each_object_centre() -> None:
    rng = random.Random(5)
    for _ in range(200):
        scene = sample_scene(rng, size=96)
        pixels = np.asarray(render(scene), dtype=np.int32)
        for obj in scene.objects:
            x, y = int(obj.x * 96), int(obj.y * 96)
            distance = np.abs(pixels[y, x] - np.array(obj.rgb)).max()
            assert distance < 40, (obj, pixels[y, x])


@pytest.mark.parametrize("language", ["en", "zh"])
def test_captions_name_every_object(language: str) -> None:
    rng = random.Random(11)
    phrasings = set()
    for _ in range(400):
        scene = sample_scene(rng)
        text = caption(scene, rng, language)
        phrasings.add(text.replace(scene.objects[0].colour, "C"))
        for obj in scene.objects:
            colour = obj.colour if language == "en" else COLOURS[obj.colour][0]
            shape = obj.shape if language == "en" else SHAPES[obj.shape][0]
            assert colour in text and shape in text, (scene.objects, text)
        others = {c for c in COLOURS if all(c != o.colour for o in scene.objects)}
        for colour in others:  # no colour that is not drawn
            if language == "en":
                assert not re.search(rf"\b{colour}\b", text), (scene.objects, text)
            else:
                assert COLOURS[colour][0] not in text, (scene.objects, text)
    assert len(phrasings) > 100  # many phrasings, not a handful


def test_counting_phrases_match_twins() -> None:
    rng = random.Random(2)
    found = 0
    for _ in range(300):
        scene = sample_scene(rng, n_objects=2)
        if len({(o.colour, o.shape) for o in scene.objects}) == 1:
            text = caption(scene, rng, "zh")
            assert text.startswith(("两个", "一张两个")), text
            found += 1
    assert found > 20


def test_style_knobs_change_pixels() -> None:
    base = sample_scene(random.Random(9), n_objects=1)
    plain = np.asarray(render(base), dtype=np.int32)
    for style in (Style(outline=True), Style(blur=2.0), Style(noise=25.0), Style(texture=True)):
        shifted = np.asarray(render(base.__class__(**{**base.__dict__, "style": style})), dtype=np.int32)
        assert np.abs(shifted - plain).mean() > 1.0, style


def test_hard_fraction_ramps_from_none_to_the_final_share() -> None:
    from clipzero.synthetic.pretrain import hard_fraction_at

    values = [hard_fraction_at(step, 100, 0.6, (0.2, 0.6)) for step in range(100)]
    assert values[:20] == [0.0] * 20 and values[60:] == [0.6] * 40
    assert values[40] == pytest.approx(0.3)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert [hard_fraction_at(s, 100, 0.5, (0.0, 0.0)) for s in (0, 99)] == [0.5, 0.5]  # constant, as for --init
    assert [hard_fraction_at(s, 100, 0.5, (0.3, 0.3)) for s in (29, 30)] == [0.0, 0.5]  # a step


@pytest.mark.parametrize("hard", [False, True])
def test_batches_hold_distinct_objects_from_seen_combinations(hard: bool) -> None:
    from clipzero.synthetic.pretrain import batch_scenes, content_key

    rng = random.Random(3)
    for _ in range(3):
        scenes = batch_scenes(rng, 96, hard=hard, distinct=True)
        keys = [content_key(s) for s in scenes]
        assert len(set(keys)) == len(keys) == 96
        objects = {(o.colour, o.shape) for s in scenes for o in s.objects}
        assert not objects & HELD_OUT
        assert len({colour for colour, _ in objects}) == (2 if hard else len(COLOURS))
    # Easy batches (the curriculum's start): lone, larger objects at 64 px on plain backgrounds.
    easy = batch_scenes(rng, 64, hard=hard, distinct=False, easy=True)
    assert all(len(s.objects) == 1 and s.objects[0].size in ("medium", "large") for s in easy)
    assert {s.background for s in easy} == {"flat", "gradient"} and {s.size for s in easy} == {64}
    # Without the rule a two-colour batch repeats itself (which is what the rule is for).
    repeated = [content_key(s) for s in batch_scenes(random.Random(3), 96, hard=True)]
    assert len(set(repeated)) < 80


@pytest.mark.slow
def test_a_few_pretraining_steps_reduce_the_loss(tmp_path: Path) -> None:
    from clipzero.synthetic.pretrain import train

    record = train(
        tmp_path / "model", steps=16, batch_size=32, warmup=2, lr=2e-3, progress=False, log_every=8, eval_every=16
    )
    first, last = record["loss_curve"][0][1], record["loss_curve"][-1][1]
    assert last < first - 0.05, record["loss_curve"]
    # Accuracy measured during training, on the model as it stood at step 16.
    assert [e["step"] for e in record["evals"]] == [16]
    assert set(record["evals"][0]) == {"step", "seen_en", "held_out_en", "seen_zh"}
    assert all(0.0 <= record["evals"][0][k] <= 1.0 for k in ("seen_en", "held_out_en", "seen_zh"))
    assert (tmp_path / "model" / "open_clip_model.safetensors").is_file()
    from clipzero import load_model

    encoder = load_model(str(tmp_path / "model"))
    assert encoder.arch == "clipzero-shapes-vit" and encoder.embed_dim == 128


def test_accuracy_during_training_follows_the_weights() -> None:
    import open_clip
    import torch

    from clipzero import load_model
    from clipzero.synthetic.pretrain import ARCH, evaluate_during_training, register_architecture

    register_architecture()
    tokenizer = open_clip.get_tokenizer(ARCH)
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH)
    evaluate_during_training(model, tokenizer)  # random weights: label embeddings of these weights get cached
    assert model.training
    trained = load_model("clipzero-shapes", precision="fp32").model.state_dict()
    model.load_state_dict(trained)
    scores = evaluate_during_training(model, tokenizer)
    # The trained weights' accuracy, not old label embeddings against new image embeddings.
    assert scores["seen_en"] > 0.8 and scores["seen_zh"] > 0.8, scores
