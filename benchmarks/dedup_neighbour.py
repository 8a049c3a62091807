"""A dedup on a server does not hold up the server's other clients: a second client's one-image classifications
while one client's dedup runs.

Usage: python benchmarks/dedup_neighbour.py [--distinct 300] [--seed 0] [--checkout DIR]

The set of benchmarks/dedup.py (``--distinct`` pictures, their edited copies and hard negatives) is indexed in a
store with the bundled model, and a real `clipzero serve --store` (the bundled model) runs on loopback. A second
client classifies one small image with a label set the server has already encoded, first on the idle server, then
over and over while the first client's POST /v1/dedup runs. The script reports the dedup's time and the second
client's median and worst latency against the idle one. ``--checkout DIR`` runs the same with another checkout's
server (``PYTHONPATH=DIR``), for before/after in one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.serving import start_server, stop_server  # noqa: E402

LABELS = "red circle, blue star, green cross, yellow heart"
KEY = "neighbour-benchmark"


def classify(url: str, data: bytes) -> float:
    started = time.perf_counter()
    reply = httpx.post(f"{url}/v1/classify", files=[("images", ("p.png", data, "image/png"))], timeout=600,
                       data={"labels": LABELS, "templates": "photo"},
                       headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    reply.raise_for_status()
    return time.perf_counter() - started


def measure(store: Path, home: Path, checkout: Path | None) -> dict[str, Any]:
    env = {"PYTHONPATH": str(checkout.resolve())} if checkout else None
    process, url = start_server("--store", str(store), "--api-key", KEY, "--request-timeout", "600", home=home,
                                env=env, cwd=checkout)  # fmt: skip
    try:
        small = (ROOT / "examples" / "blue-star.png").read_bytes()
        classify(url, small)  # the label set is encoded (cached) from here on
        idle = [classify(url, small) for _ in range(20)]
        result: dict[str, Any] = {}

        def dedup() -> None:
            started = time.perf_counter()
            reply = httpx.post(f"{url}/v1/dedup", json={}, headers={"Authorization": f"Bearer {KEY}"}, timeout=900)
            result["seconds"], result["status"] = time.perf_counter() - started, reply.status_code
            result["groups"] = len(reply.json().get("groups", [])) if reply.status_code == 200 else 0

        runner = threading.Thread(target=dedup)
        runner.start()
        time.sleep(0.2)
        busy = []
        while runner.is_alive():
            busy.append(classify(url, small))
            time.sleep(0.05)
        runner.join()
    finally:
        stop_server(process)
    return {**result, "idle_median": statistics.median(idle), "idle_worst": max(idle),
            "busy_median": statistics.median(busy) if busy else 0.0, "busy_worst": max(busy, default=0.0),
            "probes": len(busy)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distinct", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkout", type=Path, help="also run this checkout's server (before/after)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from clipzero import EmbeddingStore, load_model
    from clipzero.synthetic.edits import write_duplicate_set

    folder = Path(tempfile.mkdtemp(prefix="clipzero-neighbour-"))
    truth = write_duplicate_set(folder / "images", args.distinct, edited_share=0.3, exact_copies=10,
                                hard_negatives=90, seed=args.seed, n_objects=(2, 3))  # fmt: skip
    with EmbeddingStore(folder / "store", load_model("clipzero-shapes")) as store:
        store.add(sorted(str(p) for p in (folder / "images").iterdir()))
    runs = {"this checkout": measure(folder / "store", folder / "home", None)}
    if args.checkout:
        runs[f"checkout {args.checkout}"] = measure(folder / "store", folder / "home-other", args.checkout)
    print(f"{len(truth)} files; {os.cpu_count()} CPUs")
    print("| server | dedup seconds | groups | second client idle: median / worst | during the dedup: median / worst "
          "| probes |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['groups']} | {1000 * r['idle_median']:.0f} / "
              f"{1000 * r['idle_worst']:.0f} ms | {1000 * r['busy_median']:.0f} / {1000 * r['busy_worst']:.0f} ms | "
              f"{r['probes']} |")  # fmt: skip


if __name__ == "__main__":
    main()
