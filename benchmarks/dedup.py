"""Near-duplicate detection: precision and recall of the pairs found, and the time for a large store.

Usage: python benchmarks/dedup.py [--model clipzero-shapes] [--distinct 300] [--share 0.3] [--vectors 100000]
       [--seed 0] [--json]

A set made here: ``--distinct`` pictures of the bundled world and, for ``--share`` of them, one copy per edit (resized
to half, JPEG quality 30, 10% cropped, turned up to 3 degrees, 20% brighter), plus a few byte-identical copies. The
pictures are indexed in a store with ``--model``; then ``find_duplicates`` runs at several candidate cuts, with the
pixel verification (the default) and without it (a single embedding distance). A pair counts as found when both
images land in one group; the truth is "copies of one picture" (exact copies included).

Then the time: ``--vectors`` random unit vectors with planted near-duplicate pairs, stored and deduplicated without
reading files (verification needs the files; its cost is per image in a candidate pair, reported from the first
part).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def pairs_of(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--distinct", type=int, default=300)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, help="vector size for the timing (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="draws a different set (the defaults were chosen on 0)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from clipzero import EmbeddingStore, load_model
    from clipzero.dedup import default_threshold, find_duplicates
    from clipzero.synthetic.edits import write_duplicate_set

    results: dict[str, object] = {"model": args.model}
    folder = Path(tempfile.mkdtemp(prefix="clipzero-dedup-"))
    truth = write_duplicate_set(folder / "images", args.distinct, edited_share=args.share, exact_copies=10,
                                seed=args.seed)
    copies: dict[str, list[str]] = {}
    for name, original in truth.items():
        copies.setdefault(original, []).append(name)
    true = pairs_of([names for names in copies.values() if len(names) > 1])
    encoder = load_model(args.model)
    store = EmbeddingStore(folder / "store", encoder)
    store.add(sorted(str(p) for p in (folder / "images").iterdir()))
    default = default_threshold(encoder.id)
    rows = []
    for cut in sorted({0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, default}):
        for verify in (True, False):
            report = find_duplicates(store, cut, verify=verify)
            found = pairs_of([[Path(m.path).name for m in g.members] for g in report.groups])
            hits = len(found & true)
            rows.append({"cut": cut, "verify": verify, "precision": hits / max(len(found), 1),
                         "recall": hits / len(true), "groups": len(report.groups), "seconds": report.seconds,
                         "default": cut == default})  # fmt: skip
    results["set"] = {"files": len(truth), "true_pairs": len(true), "rows": rows}

    # Time at scale: random vectors, 1% of them with a planted near copy.
    rng = np.random.default_rng(0)
    n, dim = args.vectors, args.dim or encoder.embed_dim
    base = rng.standard_normal((n, dim)).astype(np.float32)
    planted = rng.choice(n, n // 100, replace=False)
    base[planted[1::2]] = base[planted[::2]] + 0.05 * rng.standard_normal((len(planted[1::2]), dim)).astype("f4")
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    from clipzero.dedup import _components, _pairs  # the search and grouping steps, without files

    start = time.perf_counter()
    pairs = _pairs(base, 0.9)
    groups = _components(pairs)
    seconds = time.perf_counter() - start
    results["scale"] = {"vectors": n, "dim": dim, "seconds": seconds, "pairs": len(pairs), "groups": len(groups),
                        "planted_pairs": len(planted) // 2}  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"model {args.model}; seed {args.seed}; {len(truth)} files, {len(true)} true pairs; default candidate cut "
          f"{default}")
    print("| candidate cut | pixel check | pair precision | pair recall | groups |")
    print("|---|---|---|---|---|")
    for r in rows:
        mark = " (default)" if r["default"] and r["verify"] else ""
        print(f"| {r['cut']}{mark} | {'yes' if r['verify'] else 'no'} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['groups']} |")  # fmt: skip
    s = results["scale"]
    print(f"\n{s['vectors']:,} vectors of {s['dim']} dimensions: range search and grouping {s['seconds']:.2f} s, "  # type: ignore[index]
          f"{s['pairs']} pairs in {s['groups']} groups ({s['planted_pairs']} planted)")  # type: ignore[index]


if __name__ == "__main__":
    main()
