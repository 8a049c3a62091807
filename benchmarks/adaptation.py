"""Few-shot adaptation on a task where zero-shot is weak: the bundled model on shapes drawn in a shifted style.

Usage: python benchmarks/adaptation.py [--style outline] [--shots 16] [--steps 300] [--json]

Writes a 64-class colour x shape task (train/val/test class folders, single objects in a style the model never saw
in pretraining) and runs `clipzero eval` on it: zero-shot, linear probe, cache adapter and LoRA, each fit on
``--shots`` images per class from train/, with settings chosen on a disjoint set, and scored on test/, which no
method trains on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from clipzero import load_model
from clipzero.finetune.data import load_labeled
from clipzero.finetune.lora import LoraSettings
from clipzero.finetune.run import evaluate_methods, format_comparison
from clipzero.synthetic.tasks import STYLES, write_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--style", choices=sorted(STYLES), default="outline")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="LoRA steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--templates", default="photo")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / f"shapes-{args.style}"
        counts = write_task(root, style=args.style, per_split={"train": 32, "val": 16, "test": 20}, seed=args.seed)
        encoder = load_model("clipzero-shapes", device="cpu", precision="fp32")
        start = time.perf_counter()
        report = evaluate_methods(
            load_labeled(root),
            encoder,
            methods=["zeroshot", "probe", "cache", "lora"],
            templates=args.templates,
            shots=args.shots,
            seed=args.seed,
            lora=LoraSettings(steps=args.steps, seed=args.seed),
            progress=False,
            say=lambda text: print(text, file=sys.stderr, flush=True),
        )
    if args.json:
        slim = {k: v for k, v in report.items() if k not in ("classes",)}
        for metrics in slim["methods"].values():
            metrics.pop("confusion", None)
            metrics.pop("per_class_recall", None)
        print(json.dumps(slim, indent=1))
        return
    print(f"task: shapes world, {args.style} style, {len(report['classes'])} classes; images {counts}")
    print(f"{args.shots} shots per class; test {report['test_images']} images; {time.perf_counter() - start:.0f} s")
    print(format_comparison(report))


if __name__ == "__main__":
    main()
