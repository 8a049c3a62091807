"""Classify 1000 images against 1000 labels with cold caches, then warm (label cache + embedding store).

Usage: python benchmarks/classify_cache.py [--model clipzero-shapes] [--images 1000] [--labels 1000]

Cold: an empty CLIPZERO_HOME and no store, so every label prompt and every image is encoded. Warm: the same
classification in a fresh classifier (the in-process cache cleared) reading label embeddings from the persistent
label cache and image embeddings from an EmbeddingStore built beforehand (its build time is reported apart).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--templates", default="photo")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="clipzero-bench-"))
    os.environ["CLIPZERO_HOME"] = str(work / "home")

    from clipzero import EmbeddingStore, ZeroShotClassifier, load_model
    from clipzero.synthetic import render, sample_scene
    from clipzero.synthetic.world import COLOURS, SHAPES
    from clipzero.zeroshot import clear_label_cache

    rng = random.Random(0)
    folder = work / "images"
    folder.mkdir()
    paths = []
    for i in range(args.images):
        path = folder / f"{i:05d}.png"
        render(sample_scene(rng, size=96)).save(path)
        paths.append(str(path))
    base = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    labels = [base[i % len(base)] + ("" if i < len(base) else f" number {i}") for i in range(args.labels)]
    encoder = load_model(args.model, device="cpu")

    start = time.perf_counter()
    cold_clf = ZeroShotClassifier(encoder, labels, templates=args.templates)
    cold_results = cold_clf.classify(paths, top_k=5)
    cold = time.perf_counter() - start
    cold_counts = (encoder.texts_encoded, encoder.images_encoded)

    start = time.perf_counter()
    store = EmbeddingStore(work / "store", encoder)
    store.add(paths)
    build = time.perf_counter() - start

    clear_label_cache()
    before = (encoder.texts_encoded, encoder.images_encoded)
    start = time.perf_counter()
    warm_clf = ZeroShotClassifier(encoder, labels, templates=args.templates)
    warm_results = warm_clf.classify(paths, top_k=5, store=store)
    warm = time.perf_counter() - start
    warm_counts = (encoder.texts_encoded - before[0], encoder.images_encoded - before[1])
    same = sum(a.label == b.label for a, b in zip(cold_results, warm_results))
    print(f"model {encoder.id}, {args.images} images x {len(labels)} labels, templates {args.templates}")
    print(f"cold: {cold:7.2f} s  (texts encoded {cold_counts[0]}, images encoded {cold_counts[1]})")
    print(f"warm: {warm:7.2f} s  (texts encoded {warm_counts[0]}, images encoded {warm_counts[1]})")
    print(
        f"warm is {cold / warm:.1f}x faster; store built once in {build:.2f} s; same top label for {same}/{len(paths)}"
    )


if __name__ == "__main__":
    main()
