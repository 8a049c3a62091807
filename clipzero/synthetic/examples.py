"""The example images shipped in examples/: ``python -m clipzero.synthetic.examples --out examples``."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from .world import HELD_OUT, all_combinations, combination_label, render, sample_scene

#: Seen combinations (never held out), so the bundled model should get every one right.
EXAMPLES = [
    ("red", "circle"),
    ("blue", "star"),
    ("green", "cross"),
    ("yellow", "heart"),
    ("purple", "triangle"),
    ("pink", "diamond"),
    ("orange", "square"),
    ("black", "hexagon"),
]


def write_examples(out: Path, seed: int = 7) -> list[Path]:
    """Render the example images and the English and Chinese label files into ``out``."""
    assert not set(EXAMPLES) & HELD_OUT
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for colour, shape in EXAMPLES:
        scene = sample_scene(rng, size=96, n_objects=1, allowed=[(colour, shape)])
        while scene.objects[0].size != "large":  # a demo shows each shape clearly
            scene = sample_scene(rng, size=96, n_objects=1, allowed=[(colour, shape)])
        path = out / f"{colour}-{shape}.png"
        render(scene).save(path)
        paths.append(path)
    for language in ("en", "zh"):
        labels = [combination_label(c, s, language) for c, s in all_combinations()]
        note = (
            "# every colour x shape of the shapes world\n" if language == "en" else "# 形状世界的全部颜色与形状组合\n"
        )
        (out / f"labels-{language}.txt").write_text(note + "\n".join(labels) + "\n", encoding="utf-8")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("examples"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for path in write_examples(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
