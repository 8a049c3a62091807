"""The HTTP API under load: requests/s and latency at 1, 8 and 32 concurrent clients, with and without
micro-batching, on loopback.

Usage: python benchmarks/service_load.py [--arch ViT-B-32] [--requests-per-client 6] [--clients 1 8 32]

Each request is one 640x480 JPEG and five labels to POST /v1/classify (multipart). The server is a real
`clipzero serve --no-ui` process with a ViT-B-32 of random weights (speed does not depend on the weights), at its
default precision; the same server is started a second time with --no-micro-batching as the baseline.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tagging_speed import make_images, make_model

LABELS = "a dog, a cat, a car, a tree, a bird"


def start(model: Path, batching: bool) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "clipzero", "serve", "--no-ui", "--port", str(port), "--model", str(model),
               "--templates", "photo"]  # fmt: skip
    if not batching:
        command.append("--no-micro-batching")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def load(url: str, images: list[bytes], clients: int, per_client: int) -> dict[str, float]:
    def client(index: int) -> list[float]:
        latencies = []
        with httpx.Client(timeout=300) as session:
            for n in range(per_client):
                data = images[(index * per_client + n) % len(images)]
                started = time.perf_counter()
                response = session.post(
                    f"{url}/v1/classify", files=[("images", ("p.jpg", data, "image/jpeg"))], data={"labels": LABELS}
                )
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
        return latencies

    client(0)  # warm-up (label embeddings, first batch)
    before = httpx.get(f"{url}/v1/models").json()["batching"]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(x for batch in pool.map(client, range(clients)) for x in batch)
    elapsed = time.perf_counter() - started
    after = httpx.get(f"{url}/v1/models").json()["batching"]
    batches = max(1, after["batches"] - before["batches"])
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
        "mean_batch": (after["images"] - before["images"]) / batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_model(folder / "model", args.arch)
        images = [Path(p).read_bytes() for p in make_images(folder / "images", 64)]
        os.environ["CLIPZERO_HOME"] = str(folder / "home")
        print(f"{args.arch} (random weights), one 640x480 JPEG per request, {os.cpu_count()} CPU cores")
        print(f"{'clients':>7} {'micro-batching':>15} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>11}")
        results = {}
        for batching in (False, True):
            process, url = start(folder / "model", batching)
            try:
                for clients in args.clients:
                    r = load(url, images, clients, args.requests_per_client)
                    results[(clients, batching)] = r
                    print(f"{clients:>7} {'on' if batching else 'off':>15} {r['rps']:7.1f} {r['p50']:8.0f} "
                          f"{r['p99']:8.0f} {r['mean_batch']:11.1f}", flush=True)  # fmt: skip
            finally:
                process.terminate()
                process.wait(timeout=10)
        for clients in args.clients:
            on, off = results[(clients, True)], results[(clients, False)]
            print(f"{clients} clients: micro-batching {on['rps'] / off['rps']:.2f}x the requests/s of one at a time")


if __name__ == "__main__":
    main()
