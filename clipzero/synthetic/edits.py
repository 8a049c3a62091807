"""Near-duplicate sets for measuring and testing dedup: distinct pictures of the bundled world, for a share of them
edited copies of the kinds photo libraries fill up with (resized, re-compressed, cropped, turned, brightened), and
hard negatives: the same scene with one thing changed (an object recoloured, moved, or given another shape at the same
place), which are different pictures however alike they look."""

from __future__ import annotations

import io
import math
import random
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageEnhance

from .world import COLOURS, SHAPES, Scene, render, sample_scene

__all__ = ["EDITS", "HARD_NEGATIVES", "edit", "hard_negative", "write_duplicate_set"]

#: The edits, each a copy a person would call the same photo.
EDITS = ("half", "jpeg30", "crop10", "rotate3", "brighter")

#: The changes that make another picture of the same scene: never a duplicate.
HARD_NEGATIVES = ("recolour", "move", "reshape")


def edit(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """One edited copy of ``image``: ``half`` (resized to half), ``jpeg30`` (JPEG quality 30), ``crop10`` (10% cut
    from the edges), ``rotate3`` (turned 1 to 3 degrees either way), ``brighter`` (brightness +20%)."""
    if kind == "half":
        return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    if kind == "jpeg30":
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if kind == "crop10":
        dx, dy = int(image.width * 0.1), int(image.height * 0.1)
        left, top = rng.randint(0, dx), rng.randint(0, dy)
        return image.crop((left, top, left + image.width - dx, top + image.height - dy))
    if kind == "rotate3":
        angle = rng.uniform(1, 3) * rng.choice((-1, 1))
        return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(128,) * 3)
    if kind == "brighter":
        return ImageEnhance.Brightness(image).enhance(1.2)
    raise ValueError(f"unknown edit {kind!r}: one of {', '.join(EDITS)}")


def hard_negative(scene: Scene, kind: str, rng: random.Random) -> Scene:
    """The scene with one object changed, everything else (the background's pixels included) as it was:
    ``recolour`` (another colour), ``move`` (shifted by 12-20% of the side), ``reshape`` (another shape of the same
    colour, size and place)."""
    objects = list(scene.objects)
    k = rng.randrange(len(objects))
    obj = objects[k]
    if kind == "recolour":
        others = [c for c in COLOURS if c != obj.colour]
        seen = [c for c in others if math.dist(COLOURS[c][1], scene.background_rgb[0]) > 120]  # not lost on it
        colour = rng.choice(seen or others)
        centre = COLOURS[colour][1]
        objects[k] = replace(obj, colour=colour, rgb=tuple(max(0, min(255, c + rng.randint(-10, 10)))
                                                        for c in centre))  # type: ignore[arg-type]
    elif kind == "move":
        best = (obj.x, obj.y)
        for _ in range(32):  # a direction with room for the whole shift
            angle, step = rng.uniform(0, 2 * math.pi), rng.uniform(0.12, 0.2)
            x, y = obj.x + step * math.cos(angle), obj.y + step * math.sin(angle)
            if obj.radius <= x <= 1 - obj.radius and obj.radius <= y <= 1 - obj.radius:
                best = (x, y)
                break
        else:  # no room either way: towards the middle
            best = (obj.x + (0.5 - obj.x) * 0.8, obj.y + (0.5 - obj.y) * 0.8)
        objects[k] = replace(obj, x=best[0], y=best[1])
    elif kind == "reshape":
        objects[k] = replace(obj, shape=rng.choice([s for s in SHAPES if s != obj.shape]))
    else:
        raise ValueError(f"unknown hard negative {kind!r}: one of {', '.join(HARD_NEGATIVES)}")
    return replace(scene, objects=tuple(objects))


def write_duplicate_set(out: Path, distinct: int, *, edited_share: float = 0.3, exact_copies: int = 0,
                        hard_negatives: int = 0, seed: int = 0, size: int = 160,
                        n_objects: tuple[int, ...] | None = None) -> dict[str, str]:  # fmt: skip
    """Write ``distinct`` pictures to ``out`` and, for ``edited_share`` of them, one copy per edit; plus
    ``exact_copies`` byte-identical copies of other pictures and ``hard_negatives`` changed scenes (the kinds of
    :data:`HARD_NEGATIVES` in turn, each named ``<source>-<kind>.png``).

    Args:
        n_objects: the object counts a scene draws from (default: the world's own mix of one to three).

    Returns:
        file name -> the name of the picture it is a copy of (itself for an original and for a hard negative): the
        truth to score against.
    """
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    originals = []
    for i in range(distinct):
        scene = sample_scene(rng, size=size, n_objects=rng.choice(n_objects) if n_objects else None)
        picture = render(scene)
        name = f"img{i:05d}.png"
        picture.save(out / name)
        truth[name] = name
        originals.append((name, picture, scene))
    for name, picture, _ in rng.sample(originals, round(distinct * edited_share)):
        for kind in EDITS:
            copy = f"{Path(name).stem}-{kind}.{'jpg' if kind == 'jpeg30' else 'png'}"
            edited = edit(picture, kind, rng)
            if kind == "jpeg30":  # the damage is done: kept at quality 95 so the file adds none
                edited.save(out / copy, quality=95)
            else:
                edited.save(out / copy)
            truth[copy] = name
    for name, _, _ in rng.sample(originals, min(exact_copies, len(originals))):
        copy = f"{Path(name).stem}-copy.png"
        (out / copy).write_bytes((out / name).read_bytes())
        truth[copy] = name
    for number, (name, _, scene) in enumerate(rng.sample(originals, min(hard_negatives, len(originals)))):
        kind = HARD_NEGATIVES[number % len(HARD_NEGATIVES)]
        other = f"{Path(name).stem}-{kind}.png"
        render(hard_negative(scene, kind, rng)).save(out / other)
        truth[other] = other
    return truth
