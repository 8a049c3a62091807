"""Search latency, memory and recall@10 of the store's index kinds, on clustered vectors.

Usage: python benchmarks/store_search.py [--sizes 10000 100000] [--kinds flat hnsw ivf] [--dim 512]

Each approximate kind is measured twice: at its build setting, and tuned as a store tunes it (the cheapest nprobe or
efSearch reaching recall@10 0.95 on probe queries of its own, stored vectors moved to cosine about 0.55; see
``clipzero.store.database.tuned_search``); the measured queries are others, moved to cosine about 0.95.

Vectors are clustered like real embeddings (a mixture of Gaussians around centres in a low-rank subspace, then
L2-normalised), not uniform noise, on which nearest neighbours are meaningless. Recall@10 is measured against exact
search (flat) over the same vectors in the same run; latency is per query, one query at a time, after warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clipzero.store.index_kinds import IndexSpec, auto_tune, build_index


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(64, dim)).astype(np.float32)
    centres = rng.normal(size=(clusters, 64)).astype(np.float32) @ basis  # (clusters, dim), a 64-d subspace
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        labels = rng.integers(0, clusters, stop - start)
        noise = rng.normal(scale=0.6 / np.sqrt(dim), size=(stop - start, dim)).astype(np.float32)
        block = centres[labels] + noise
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return np.ascontiguousarray(out)


def index_bytes(index: object) -> int:
    import faiss

    return int(faiss.serialize_index(index).size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf"])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"{'n':>9} {'kind':<5} {'setting':<15} {'build s':>8} {'ms/query':>9} {'vs flat':>8} {'recall@10':>10} "
          f"{'index MB':>9}")  # fmt: skip
    for n in args.sizes:
        data = clustered(n, args.dim)
        ids = np.arange(1, n + 1, dtype=np.int64)
        rng = np.random.default_rng(1)
        queries = data[rng.integers(0, n, args.queries)] + rng.normal(
            scale=0.3 / np.sqrt(args.dim), size=(args.queries, args.dim)
        )
        queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)
        truth = None
        base_ms = None
        for kind in ["flat", *[k for k in args.kinds if k != "flat"]]:
            start = time.perf_counter()
            sample = data[rng.choice(n, min(n, 100_000), replace=False)] if kind == "ivf" else None
            index = build_index(IndexSpec(kind), args.dim, n, sample)
            index.add_with_ids(data, ids)
            build = time.perf_counter() - start
            settings = [("build", None)]
            if kind != "flat":
                probes = data[rng.integers(0, n, 100)] + 1.5 * rng.normal(size=(100, args.dim)) / np.sqrt(args.dim)
                probes = np.ascontiguousarray(probes / np.linalg.norm(probes, axis=1, keepdims=True), np.float32)
                settings.append(("tuned", probes))
            for label, probes in settings:
                if probes is not None:
                    tuned = auto_tune(index, probes)
                    assert tuned is not None
                    label = f"{tuned['setting']}={tuned['value']}"
                else:
                    described = IndexSpec(kind).describe(index)
                    label = ", ".join(f"{k}={described[k]}" for k in ("nprobe", "ef_search") if k in described) or "-"
                index.search(queries[:5], 10)  # warm-up
                start = time.perf_counter()
                found = np.vstack([index.search(q[None, :], 10)[1] for q in queries])
                ms = (time.perf_counter() - start) * 1000 / len(queries)
                if truth is None:
                    truth, base_ms = found, ms
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]))
                print(f"{n:9d} {kind:<5} {label:<15} {build:8.1f} {ms:9.3f} {base_ms / ms:7.1f}x {recall:10.3f} "
                      f"{index_bytes(index) / 1e6:9.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
