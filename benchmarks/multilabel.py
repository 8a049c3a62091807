"""Multi-label tagging on scenes of two or three shapes, with the bundled model: one view against several, the
default (reference-calibrated) cut against one fitted on labelled images, and what the views cost in images/s.

Usage: python benchmarks/multilabel.py [--scenes 300] [--json]

The test scenes come from the shapes world (``clipzero.multilabel.reference_scenes``) with another seed than the
reference task's, scored against all 64 colour x shape labels with the default template set. "held-out" scenes
hold only combinations the bundled model never saw in pretraining (``HELD_OUT``). "fitted" fits the cuts on a
separate labelled split of 150 scenes (``fit_rule``; what ``calibrate --multi-label`` will do), never on the test
scenes. mAP is the mean over labels of average precision (ranking by score); micro-F1 and exact-set accuracy are
at the decision cut. images/s is measured in this process, each view count on the same scenes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from clipzero import load_model
    from clipzero.finetune.multilabel_eval import MultiLabelSet, measure
    from clipzero.multilabel import fit_rule, reference_scenes
    from clipzero.pipeline import embed_all
    from clipzero.synthetic.world import HELD_OUT, all_combinations, combination_label
    from clipzero.zeroshot import ZeroShotClassifier

    encoder = load_model("clipzero-shapes")
    combos = all_combinations()
    labels = [combination_label(c, s) for c, s in combos]
    classifier = ZeroShotClassifier(encoder, labels)
    seen = [c for c in combos if c not in HELD_OUT]
    sets = {"seen": reference_scenes(args.scenes, 1, allowed=seen),
            "held-out": reference_scenes(args.scenes // 3, 2, allowed=sorted(HELD_OUT)),
            "fit split": reference_scenes(150, 4, allowed=seen)}
    rows = []
    for views in (1, 5, 10):
        rule = classifier.multi_label_rule(views)
        similarities, speed = {}, 0.0
        for name, scenes in sets.items():
            start = time.perf_counter()
            items = embed_all([image for image, _ in scenes], encoder, views=views, workers=0)
            if name == "seen":
                speed = len(scenes) / (time.perf_counter() - start)
            vectors = np.stack([np.asarray(i.vector).reshape(views, -1) for i in items])
            similarities[name] = vectors @ classifier.weights.T
        truth = {name: np.zeros((len(s), len(combos)), bool) for name, s in sets.items()}
        for name, scenes in sets.items():
            for row, (_, present) in enumerate(scenes):
                truth[name][row, sorted(present)] = True
        fitted = fit_rule(similarities["fit split"], truth["fit split"], float(encoder.logit_scale), views)
        for cut_name, used in (("default", rule), ("fitted", fitted)):
            for name in ("seen", "held-out"):
                paths = [str(i) for i in range(len(sets[name]))]
                figures = measure(similarities[name], MultiLabelSet(paths, labels, truth[name]), used)
                rows.append({"views": views, "cut": cut_name, "scenes": name, "images_per_s": round(speed, 1),
                             "mAP": figures["map"], "micro_f1": figures["micro_f1"], "exact": figures["exact_set"]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    base = next(r["images_per_s"] for r in rows if r["views"] == 1)
    print(f"clipzero-shapes, 64 labels, {args.scenes} scenes of 2-3 objects (held-out: {args.scenes // 3})")
    print(f"{'views':>5} {'cut':<8} {'scenes':<9} {'mAP':>6} {'micro-F1':>9} {'exact':>6} {'images/s':>9} {'vs 1':>6}")
    for r in rows:
        print(f"{r['views']:>5} {r['cut']:<8} {r['scenes']:<9} {r['mAP']:6.3f} {r['micro_f1']:9.3f} {r['exact']:6.2f} "
              f"{r['images_per_s']:9.1f} {r['images_per_s'] / base:5.2f}x")


if __name__ == "__main__":
    main()
