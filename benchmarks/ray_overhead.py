"""The Ray engine's overhead on one machine, and what the measured figures project for 10M and 100M images.

Usage: python benchmarks/ray_overhead.py [--images 256] [--arch ViT-B-32] [--nodes 10 100]

Runs `clipzero tag` on the same JPEG files (640x480) with the same ViT-B-32 (random weights) twice, with the local
engine and with --engine ray on a local Ray cluster (ray.init() here, startup included and reported apart), then
builds a sharded IVF index from the Ray run's embedding shards. From the measured images/s per node and bytes per
vector it projects, for 10M and 100M images on N such nodes: tagging hours, and index memory with flat and PQ lists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tagging_speed import make_images, make_model

LABELS = ["a cat", "a dog", "a car", "a tree", "a house"]


def tag(model: Path, images: Path, out: Path, *extra: str) -> tuple[float, dict]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "clipzero", "tag", str(images), "--model", str(model), "--labels", *LABELS,
         "--templates", "photo", "--out", str(out), "--json", "--quiet", *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - started, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_model(work / "model", args.arch)
        make_images(work / "images", args.images)
        local_wall, local = tag(work / "model", work / "images", work / "local.jsonl")
        ray_wall, remote = tag(work / "model", work / "images", work / "ray.jsonl", "--engine", "ray")
        from clipzero.store.sharded import build_from_shards, choose_layout

        shards = sorted((work / "ray.jsonl.embeddings").glob("*.parquet"))
        summary = build_from_shards(shards, work / "index" / "merged.index")
    local_rate, ray_rate = local["images_per_s"], remote["images_per_s"]
    print(f"{args.images} JPEG files 640x480, {args.arch}, 2 CPU cores, precision {local['precision']}")
    print(f"{'engine':<24} {'images/s':>9} {'wall s':>7}")
    print(f"{'local':<24} {local_rate:9.1f} {local_wall:7.1f}")
    print(f"{'ray (local cluster)':<24} {ray_rate:9.1f} {ray_wall:7.1f}")
    print(f"Ray overhead: {ray_rate / local_rate:.2f}x the local engine's images/s; "
          f"{ray_wall - remote['elapsed_s']:.0f} s of start-up (process, ray.init, model per actor)")  # fmt: skip
    print(f"sharded index from {summary['shards']} shard(s): {summary['factory']}, {summary['vectors']} vectors")
    dim = summary["dim"]
    print("\nprojection (tagging at the measured Ray rate per 2-core node; Ray's own scaling assumed linear):")
    print(f"{'images':>12} {'nodes':>6} {'hours':>8} {'IVF-Flat lists':>15} {'IVF-PQ lists':>13} {'nlist':>7}")
    for n in (10_000_000, 100_000_000):
        flat, pq = choose_layout(n, dim, memory_budget_gb=1e9), choose_layout(n, dim, memory_budget_gb=0)
        for nodes in args.nodes:
            hours = n / (ray_rate * nodes) / 3600
            print(f"{n:>12,} {nodes:>6} {hours:8.1f} {n * flat.bytes_per_vector(dim) / 1e9:12.1f} GB "
                  f"{n * pq.bytes_per_vector(dim) / 1e9:10.1f} GB {flat.nlist:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
