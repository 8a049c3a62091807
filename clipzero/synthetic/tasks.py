"""Labelled shapes-world tasks for adaptation: class folders with train/val/test splits, in a shifted style.

``python -m clipzero.synthetic.tasks --out DIR --style outline`` writes ``DIR/{train,val,test}/<colour>_<shape>/``
with single-object images drawn in a style the bundled model never saw in pretraining (outline-only shapes,
heavy noise, blur or textures), where its zero-shot accuracy is weak: the task adaptation has to fix.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from .world import Style, all_combinations, render, sample_scene

__all__ = ["STYLES", "write_task"]

STYLES = {
    "outline": Style(outline=True),
    "noise": Style(noise=40.0),
    "blur": Style(blur=1.5),
    "texture": Style(texture=True),
    "plain": Style(),
}


def write_task(
    out: Path,
    *,
    style: str = "outline",
    combos: list[tuple[str, str]] | None = None,
    per_split: dict[str, int] | None = None,
    seed: int = 0,
    size: int = 64,
) -> dict[str, int]:
    """Write a colour x shape classification task as class folders; returns images written per split.

    Each split is drawn from its own seed, so no image is repeated across splits.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    combos = combos or all_combinations()
    per_split = per_split or {"train": 32, "val": 16, "test": 20}
    written = {}
    for offset, (split, count) in enumerate(per_split.items()):
        rng = random.Random(seed * 1000 + offset)
        n = 0
        for colour, shape in combos:
            folder = out / split / f"{colour}_{shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                scene = sample_scene(rng, size=size, n_objects=1, allowed=[(colour, shape)], style=STYLES[style])
                render(scene).save(folder / f"{index:04d}.png")
                n += 1
        written[split] = n
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--style", choices=sorted(STYLES), default="outline")
    parser.add_argument("--train", type=int, default=32, help="images per class in train/")
    parser.add_argument("--val", type=int, default=16, help="images per class in val/")
    parser.add_argument("--test", type=int, default=20, help="images per class in test/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = write_task(
        args.out, style=args.style, per_split={"train": args.train, "val": args.val, "test": args.test}, seed=args.seed
    )
    print(", ".join(f"{split} {n}" for split, n in counts.items()), f"images in {args.out}")


if __name__ == "__main__":
    main()
