"""Near-duplicate detection with hard negatives: pair precision and recall, recall per edit, false groupings per
kind of changed scene, whether each copy is named by the right kind, and the time.

Usage: python benchmarks/dedup.py [--model clipzero-shapes] [--distinct 300] [--share 0.3] [--hard 90]
       [--seed 0] [--checkout DIR] [--repeat 3] [--vectors 100000] [--json]

The set: ``--distinct`` pictures of the bundled world with two or three objects; for ``--share`` of them one copy per
edit (half size, JPEG quality 30, a 10% crop, a turn of 1 to 3 degrees, 20% brighter); 10 byte-identical copies; and
``--hard`` hard negatives, a third each: one object recoloured, moved, or given another shape at the same place. The
pictures are indexed in a store with ``--model``, and ``find_duplicates`` runs with the defaults. A pair counts as
found when both images land in one group; the truth is "copies of one picture". ``--checkout DIR`` runs the same
store through another checkout's ``find_duplicates`` (its own defaults) for a before/after table. Each checkout runs
``--repeat`` times, interleaved; the seconds shown are the medians, and the time ratio is the median of the ratios
of runs made side by side (this machine's speed drifts by a third within minutes).

Then the time at scale: ``--vectors`` random unit vectors with planted near pairs, through the candidate search and
grouping alone (verification needs files; its cost per image is in the first part).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

EXPECTED = {"half": "resized", "jpeg30": "re-encoded", "crop10": "cropped", "rotate3": "turned", "brighter": "edited",
            "copy": "exact"}  # fmt: skip

#: Run in another checkout: its find_duplicates on the store, the groups as JSON on stdout.
_OTHER = """
import json, sys, logging
logging.disable(logging.WARNING)
from clipzero import EmbeddingStore, find_duplicates
with EmbeddingStore(sys.argv[1]) as store:
    report = find_duplicates(store)
print(json.dumps({"seconds": report.seconds, "groups": [[m.path for m in g.members] for g in report.groups]}))
"""


def pairs_of(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


def kind_of(name: str) -> str:
    """The edit or change in a file's name (``img00012-crop10.png`` -> crop10), or ``original``."""
    stem = Path(name).stem
    return stem.split("-", 1)[1] if "-" in stem else "original"


def score(groups: list[list[str]], truth: dict[str, str]) -> dict[str, object]:
    """Pair precision and recall; recall per edit (the copy grouped with its original); false groupings per hard
    negative kind (the changed scene grouped with its source)."""
    copies: dict[str, list[str]] = {}
    for name, original in truth.items():
        copies.setdefault(original, []).append(name)
    true = pairs_of([names for names in copies.values() if len(names) > 1])
    found = pairs_of([[Path(p).name for p in g] for g in groups])
    hits = len(found & true)
    per_edit: Counter[str] = Counter()
    per_hard: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for name, original in truth.items():
        kind = kind_of(name)
        if kind == "original":
            continue
        source = f"{name.split('-')[0]}.png"
        totals[kind] += 1
        together = frozenset((name, source)) in found
        if original == name:  # a hard negative: together is a false grouping
            per_hard[kind] += together
        else:
            per_edit[kind] += together
    return {"pairs_found": len(found), "true_pairs": len(true), "precision": hits / max(len(found), 1),
            "recall": hits / max(len(true), 1), "false_pairs": len(found - true),
            "recall_by_edit": {k: f"{per_edit[k]}/{totals[k]}" for k in totals if k in EXPECTED},
            "grouped_hard_negatives": {k: f"{per_hard[k]}/{totals[k]}" for k in totals
                                       if k not in EXPECTED}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--distinct", type=int, default=300)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--hard", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkout", type=Path, help="also run this checkout's find_duplicates (before/after)")
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each checkout (the median is shown)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from clipzero import EmbeddingStore, load_model
    from clipzero.dedup import find_duplicates
    from clipzero.synthetic.edits import write_duplicate_set

    folder = Path(tempfile.mkdtemp(prefix="clipzero-dedup-"))
    truth = write_duplicate_set(folder / "images", args.distinct, edited_share=args.share, exact_copies=10,
                                hard_negatives=args.hard, seed=args.seed, n_objects=(2, 3))  # fmt: skip
    encoder = load_model(args.model)
    start = time.perf_counter()
    with EmbeddingStore(folder / "store", encoder) as store:
        store.add(sorted(str(p) for p in (folder / "images").iterdir()))
    index_seconds = time.perf_counter() - start
    results: dict[str, object] = {"model": args.model, "seed": args.seed, "files": len(truth),
                                  "index_seconds": index_seconds, "cpus": os.cpu_count()}  # fmt: skip
    this: list[float] = []
    theirs: list[float] = []
    for _ in range(args.repeat):  # interleaved, so that a slower spell of the machine falls on both
        with EmbeddingStore(folder / "store") as store:
            report = find_duplicates(store)
        this.append(report.seconds)
        if args.checkout:
            other = subprocess.run([sys.executable, "-c", _OTHER, str(folder / "store")], capture_output=True,
                                   text=True, cwd=args.checkout, check=True,
                                   env={**os.environ, "PYTHONPATH": str(args.checkout.resolve())})  # fmt: skip
            data = json.loads(other.stdout)
            theirs.append(data["seconds"])
    with EmbeddingStore(folder / "store") as store:
        loose = find_duplicates(store, verify=False)
    runs = {"this checkout": (statistics.median(this), [[m.path for m in g.members] for g in report.groups]),
            "embedding cut alone": (loose.seconds, [[m.path for m in g.members] for g in loose.groups])}
    if args.checkout:
        runs[f"checkout {args.checkout}"] = (statistics.median(theirs), data["groups"])
        results["time_ratio"] = {"median": statistics.median(a / b for a, b in zip(this, theirs)),
                                 "each": [round(a / b, 2) for a, b in zip(this, theirs)]}  # fmt: skip
    results["runs"] = {name: {"seconds": seconds, **score(groups, truth)} for name, (seconds, groups) in runs.items()}
    named = Counter()
    for group in report.groups:
        for member in group.others:
            kind = kind_of(Path(member.path).name)
            if kind in EXPECTED and truth.get(Path(member.path).name) == Path(group.keep.path).name:
                expected = EXPECTED[kind]
                got = "exact" if group.kind == "exact" else "+".join(member.kinds)
                named[(kind, got == expected)] += 1
    results["kinds_named"] = {k: f"{named[(k, True)]}/{named[(k, True)] + named[(k, False)]}" for k in EXPECTED}

    rng = np.random.default_rng(0)  # the candidate search at scale: random vectors, 1% with a planted near copy
    n, dim = args.vectors, encoder.embed_dim
    base = rng.standard_normal((n, dim)).astype(np.float32)
    planted = rng.choice(n, n // 100, replace=False)
    base[planted[1::2]] = base[planted[::2]] + 0.05 * rng.standard_normal((len(planted[1::2]), dim)).astype("f4")
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    from clipzero.dedup import _pairs
    from clipzero.dedupverify import components

    start = time.perf_counter()
    pairs = _pairs(base, 0.9)
    groups = components(pairs)
    results["scale"] = {"vectors": n, "dim": dim, "seconds": time.perf_counter() - start, "pairs": len(pairs),
                        "groups": len(groups), "planted_pairs": len(planted) // 2}  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"model {args.model}; seed {args.seed}; {len(truth)} files; indexed in {index_seconds:.1f} s; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("| run | pair precision | pair recall | false pairs | seconds | recall by edit | hard negatives grouped |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["runs"].items():  # type: ignore[attr-defined]
        edits = ", ".join(f"{k} {v}" for k, v in r["recall_by_edit"].items())
        hard = ", ".join(f"{k} {v}" for k, v in r["grouped_hard_negatives"].items())
        print(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['false_pairs']} | {r['seconds']:.1f} | "
              f"{edits} | {hard} |")  # fmt: skip
    if "time_ratio" in results:
        ratio = results["time_ratio"]
        print(f"\ntime against the other checkout: {ratio['median']:.2f}x at the median of {args.repeat} interleaved "  # type: ignore[index]
              f"runs (each: {', '.join(f'{r:.2f}' for r in ratio['each'])})")  # type: ignore[index]
    named_right = ", ".join(f"{k} {v}" for k, v in results["kinds_named"].items())  # type: ignore[attr-defined]
    print(f"\nkinds named right: {named_right}")
    s = results["scale"]
    print(f"\n{s['vectors']:,} vectors of {s['dim']} dimensions: range search and grouping {s['seconds']:.2f} s, "  # type: ignore[index]
          f"{s['pairs']} pairs in {s['groups']} groups ({s['planted_pairs']} planted)")  # type: ignore[index]


if __name__ == "__main__":
    main()
