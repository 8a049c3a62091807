"""'None of these' on the bundled model's world: how well each cut tells images that fit a label from those that fit
none.

Usage: python benchmarks/rejection.py [--model clipzero-shapes] [--trials 3] [--per-combo 6] [--json]

For label lists of 8, 16 and 32 colour x shape combinations (drawn at random, ``--trials`` times each), images of the
listed combinations (``--per-combo`` each) and of unlisted ones: near misses (same colour or same shape as a listed
label) and, where there are any, the rest. For each cut: the AUROC of its score as a detector of "fits one of the
labels", the share of listed images that keep their correct label, and the share of unlisted images rejected.

Then calibration: ``clipzero calibrate`` on the outline-style shifted task (64 classes, 8 train + 4 val + 8 test images
each), ECE on its test split before and after.

Cuts: ``--reject auto`` (the model's reference-calibrated similarity cut), the top probability at 0.5 and 0.9
(``--threshold``), and a raw similarity of 0.3 (``--min-similarity 0.3``, a cut often hand-tuned for real CLIP
models on photos). The templates are ``photo`` (ensemble-en gives the same figures within 1% on this model).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time

import numpy as np

from clipzero import load_model
from clipzero.calibration import auroc
from clipzero.pipeline import embed_all
from clipzero.synthetic.world import HELD_OUT, all_combinations, combination_label, single_object_set
from clipzero.zeroshot import ZeroShotClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--per-combo", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    encoder = load_model(args.model, device="cpu", precision="fp32")
    combos = all_combinations()
    rows = {}
    start = time.perf_counter()
    for n in (8, 16, 32):
        totals: dict[str, list[float]] = {}
        counts = {"fits": 0, "near": 0, "far": 0, "held_out_listed": 0}
        for trial in range(args.trials):
            rng = random.Random(1000 * n + trial)
            listed = rng.sample(combos, n)
            unlisted = [c for c in combos if c not in listed]
            near = [c for c in unlisted if any(c[0] == a or c[1] == b for a, b in listed)]
            far = [c for c in unlisted if c not in near]
            classifier = ZeroShotClassifier(encoder, [combination_label(*c) for c in listed], templates="photo")
            rule = classifier.rejection_rule("auto")
            fits = single_object_set(listed, args.per_combo, seed=7 + trial)
            misses = single_object_set(unlisted, max(1, args.per_combo * n // len(unlisted)), seed=9 + trial)
            counts["fits"] += len(fits)
            counts["near"] += sum(c in near for _, c in misses)
            counts["far"] += sum(c in far for _, c in misses)
            counts["held_out_listed"] += sum(c in HELD_OUT for c in listed)
            vectors = np.stack([e.vector for e in embed_all([i for i, _ in fits + misses], encoder)])  # type: ignore[misc]
            probabilities, similarities = classifier.scores(vectors)
            top_p, top_s = probabilities.max(axis=1), similarities.max(axis=1)
            is_fit = np.arange(len(vectors)) < len(fits)
            correct = np.array([classifier.labels[j] == combination_label(*c)
                                for j, (_, c) in zip(similarities[: len(fits)].argmax(axis=1), fits)])  # fmt: skip
            cuts = {"reject auto": (top_s, rule.threshold), "threshold 0.5": (top_p, 0.5),
                    "threshold 0.9": (top_p, 0.9), "min-similarity 0.3": (top_s, 0.3)}  # fmt: skip
            for name, (score, cut) in cuts.items():
                kept = float(np.mean(correct & (score[is_fit] >= cut)))
                rejected = float(np.mean(score[~is_fit] < cut))
                for key, value in (("auroc", auroc(score[is_fit], score[~is_fit])), ("kept", kept),
                                   ("rejected", rejected)):  # fmt: skip
                    totals.setdefault(f"{name}|{key}", []).append(value)
            totals.setdefault("threshold", []).append(rule.threshold)
        rows[n] = {key: round(float(np.mean(values)), 4) for key, values in totals.items()} | counts
        if not args.json:
            print(f"\n{n} labels ({counts['fits']} listed images, {counts['near']} near misses, {counts['far']} "
                  f"others; auto cut {rows[n]['threshold']:.3f})")  # fmt: skip
            print(f"  {'cut':<20} {'AUROC':>6} {'listed kept+correct':>20} {'unlisted rejected':>18}")
            for name in ("reject auto", "threshold 0.5", "threshold 0.9", "min-similarity 0.3"):
                r = rows[n]
                print(f"  {name:<20} {r[name + '|auroc']:6.3f} {r[name + '|kept'] * 100:19.1f}% "
                      f"{r[name + '|rejected'] * 100:17.1f}%", flush=True)  # fmt: skip
    calibration = _calibration(encoder)
    if args.json:
        print(json.dumps({"model": encoder.id, "trials": args.trials, "rows": rows, "calibration": calibration},
                         indent=1))  # fmt: skip
    else:
        print(f"\noutline task: temperature {calibration['temperature']:.2f} fitted on {calibration['fit_images']} "
              f"images; test ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f} "
              f"({calibration['ece_after'] / calibration['ece_before']:.2f}x); top-1 {calibration['top1'] * 100:.1f}%")
        print(f"model {encoder.id}; {time.perf_counter() - start:.0f} s")


def _calibration(encoder: object) -> dict[str, float]:
    """``clipzero calibrate``'s figures on the outline task, written to a temporary folder."""
    import tempfile
    from pathlib import Path

    from clipzero.finetune.calibrate import calibrate
    from clipzero.finetune.data import load_labeled
    from clipzero.synthetic.tasks import write_task

    with tempfile.TemporaryDirectory() as folder:
        write_task(Path(folder), style="outline", per_split={"train": 8, "val": 4, "test": 8})
        _, report = calibrate(load_labeled(folder), encoder, templates="photo", shots=16)
    return report


if __name__ == "__main__":
    main()
