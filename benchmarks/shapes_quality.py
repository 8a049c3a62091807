"""Zero-shot quality of the bundled clipzero-shapes model on the shapes world.

Usage: python benchmarks/shapes_quality.py [--model clipzero-shapes] [--per-combo 12] [--json]

Top-1 over single-object images against the full colour x shape label set (64 labels): seen and held-out
combinations, English and Chinese labels, one template against the ensemble, and images with style knobs the
model never saw in pretraining (outline-only, blur, noise, texture).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from clipzero import load_model
from clipzero.synthetic import Style
from clipzero.synthetic.evaluate import shapes_accuracy

ROWS = [
    ("seen, en, photo", dict(split="seen", language="en", templates="photo")),
    ("held-out, en, photo", dict(split="held-out", language="en", templates="photo")),
    ("seen, zh, photo-zh", dict(split="seen", language="zh", templates="photo-zh")),
    ("held-out, zh, photo-zh", dict(split="held-out", language="zh", templates="photo-zh")),
    ("seen, en, ensemble-en", dict(split="seen", language="en", templates="ensemble-en")),
    ("held-out, en, ensemble-en", dict(split="held-out", language="en", templates="ensemble-en")),
    ("seen, zh, ensemble-zh", dict(split="seen", language="zh", templates="ensemble-zh")),
    ("seen, en, photo, blur 1.5", dict(split="seen", language="en", templates="photo", style=Style(blur=1.5))),
    ("seen, en, photo, noise 40", dict(split="seen", language="en", templates="photo", style=Style(noise=40.0))),
    ("seen, en, photo, texture", dict(split="seen", language="en", templates="photo", style=Style(texture=True))),
    ("seen, en, photo, outline", dict(split="seen", language="en", templates="photo", style=Style(outline=True))),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--per-combo", type=int, default=12, help="images per colour x shape combination")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    encoder = load_model(args.model, device="cpu")
    results = {}
    start = time.perf_counter()
    for name, kwargs in ROWS:
        accuracy = shapes_accuracy(encoder, per_combo=args.per_combo, **kwargs)  # type: ignore[arg-type]
        results[name] = {"accuracy": round(accuracy.value, 4), "images": accuracy.total}
        if not args.json:
            print(f"{name:<28} {accuracy.value * 100:6.1f}%  ({accuracy.correct}/{accuracy.total})", flush=True)
    if args.json:
        print(json.dumps({"model": encoder.id, "per_combo": args.per_combo, "results": results}, indent=1))
    else:
        print(f"model {encoder.id}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
