"""The shapes world: deterministic, captions agree with what is drawn, held-out combinations never appear."""

from __future__ import annotations

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


@pytest.mark.slow
def test_a_few_pretraining_steps_reduce_the_loss(tmp_path: Path) -> None:
    from clipzero.synthetic.pretrain import train

    record = train(tmp_path / "model", steps=16, batch_size=32, warmup=2, lr=2e-3, progress=False, log_every=8)
    first, last = record["loss_curve"][0][1], record["loss_curve"][-1][1]
    assert last < first - 0.05, record["loss_curve"]
    assert (tmp_path / "model" / "open_clip_model.safetensors").is_file()
    from clipzero import load_model

    encoder = load_model(str(tmp_path / "model"))
    assert encoder.arch == "clipzero-shapes-vit" and encoder.embed_dim == 128
