"""Near-duplicate sets for measuring and testing dedup: distinct pictures of the bundled world, and for a share of
them edited copies of the kinds photo libraries fill up with (resized, re-compressed, cropped, turned, brightened)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageEnhance

from .world import render, sample_scene

__all__ = ["EDITS", "edit", "write_duplicate_set"]

#: The edits, each a copy a person would call the same photo.
EDITS = ("half", "jpeg30", "crop10", "rotate3", "brighter")


def edit(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """One edited copy of ``image``: ``half`` (resized to half), ``jpeg30`` (JPEG quality 30), ``crop10`` (10% cut
    from the edges), ``rotate3`` (turned up to 3 degrees), ``brighter`` (brightness +20%)."""
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
        return image.rotate(rng.uniform(-3, 3), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(128,) * 3)
    if kind == "brighter":
        return ImageEnhance.Brightness(image).enhance(1.2)
    raise ValueError(f"unknown edit {kind!r}: one of {', '.join(EDITS)}")


def write_duplicate_set(out: Path, distinct: int, *, edited_share: float = 0.3, exact_copies: int = 0,
                        seed: int = 0, size: int = 160) -> dict[str, str]:  # fmt: skip
    """Write ``distinct`` pictures to ``out`` and, for ``edited_share`` of them, one copy per edit; plus
    ``exact_copies`` byte-identical copies of other pictures.

    Returns:
        file name -> the name of the picture it is a copy of (itself for an original): the truth to score against.
    """
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    originals = []
    for i in range(distinct):
        picture = render(sample_scene(rng, size=size))
        name = f"img{i:05d}.png"
        picture.save(out / name)
        truth[name] = name
        originals.append((name, picture))
    for name, picture in rng.sample(originals, round(distinct * edited_share)):
        for kind in EDITS:
            copy = f"{Path(name).stem}-{kind}.{'jpg' if kind == 'jpeg30' else 'png'}"
            edited = edit(picture, kind, rng)
            if kind == "jpeg30":  # the damage is done: kept at quality 95 so the file adds none
                edited.save(out / copy, quality=95)
            else:
                edited.save(out / copy)
            truth[copy] = name
    for name, _ in rng.sample(originals, min(exact_copies, len(originals))):
        copy = f"{Path(name).stem}-copy.png"
        (out / copy).write_bytes((out / name).read_bytes())
        truth[copy] = name
    return truth
