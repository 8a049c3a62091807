"""No client slows the others: a second client's cached requests while one client floods the server.

Usage: python benchmarks/service_fairness.py [--copies 12] [--attackers 45] [--checkout DIR]

A real `clipzero serve` (the bundled model) on loopback. One client lists one uploaded 8000x8000 16-bit PNG
(a small file, seconds to decode) ``--copies`` times in one web UI classify call; at the same time ``--attackers``
clients POST that PNG to /v1/classify. A second client keeps sending small classifications with a label set the
server has already encoded, through the UI and through the API, and the script reports their worst latency as a
multiple of the same requests' latency on the idle server (measured first, in the same run). Then the upload
folder: ``--upload-mb`` of 30 MB uploads, and the most bytes the folder held, against its quota.

``--checkout DIR`` runs the server from another clipzero checkout (``PYTHONPATH=DIR``): the way to measure the
code before a change with the same script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.media import huge_png  # noqa: E402
from tests.serving import free_port  # noqa: E402

LABELS = "red circle, blue star, green cross, yellow heart"


def start(home: Path, checkout: Path | None, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CLIPZERO_HOME": str(home), "TMPDIR": str(home)}
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    command = [sys.executable, "-m", "clipzero", "serve", "--model", "clipzero-shapes", "--port", str(port), *extra]
    process = subprocess.Popen(command, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/gradio_api/upload", files=[("files", (name, data, "image/png"))], timeout=300)


def ui_classify(url: str, paths: list[str]) -> tuple[float, bool]:
    started = time.perf_counter()
    files = [{"path": p, "meta": {"_type": "gradio.FileData"}} for p in paths]
    reply = httpx.post(f"{url}/gradio_api/call/classify", timeout=600,
                       json={"data": [files, LABELS, "photo", 3, 0, False, False]})  # fmt: skip
    stream = httpx.get(f"{url}/gradio_api/call/classify/{reply.json()['event_id']}", timeout=600).text
    return time.perf_counter() - started, "event: complete" in stream


def api_classify(url: str, data: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    reply = httpx.post(f"{url}/v1/classify", files=[("images", ("p.png", data, "image/png"))], timeout=600,
                       data={"labels": LABELS, "templates": "photo"})  # fmt: skip
    return time.perf_counter() - started, reply.status_code


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stall(url: str, pid: int, copies: int, attackers: int) -> dict[str, Any]:
    huge = huge_png()
    small = (ROOT / "examples" / "blue-star.png").read_bytes()
    huge_path, small_path = upload(url, "huge.png", huge).json()[0], upload(url, "small.png", small).json()[0]
    ui_classify(url, [small_path]), api_classify(url, small)  # the label set is encoded (cached) from here on
    idle_ui = statistics.median(ui_classify(url, [small_path])[0] for _ in range(5))
    idle_api = statistics.median(api_classify(url, small)[0] for _ in range(5))
    before = rss(pid)
    result: dict[str, Any] = {}
    done = threading.Event()
    probes: dict[str, list[float]] = {"ui": [], "api": []}
    peak = [before]

    def heavy() -> None:
        result["heavy"] = ui_classify(url, [huge_path] * copies)

    def attack() -> None:
        with ThreadPoolExecutor(attackers) as pool:
            result["attack"] = list(pool.map(lambda _: api_classify(url, huge), range(attackers)))

    def probe(kind: str) -> None:
        while not done.is_set():
            probes[kind].append(ui_classify(url, [small_path])[0] if kind == "ui" else api_classify(url, small)[0])
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.2)

    load = [threading.Thread(target=heavy), threading.Thread(target=attack)]
    watchers = [threading.Thread(target=probe, args=(kind,)) for kind in probes]
    for thread in load:
        thread.start()
    time.sleep(0.5)
    for thread in watchers:
        thread.start()
    for thread in load:
        thread.join()
    done.set()
    for thread in watchers:
        thread.join()
    statuses: dict[int, list[float]] = {}
    for seconds, status in result["attack"]:
        statuses.setdefault(status, []).append(seconds)
    return {
        "idle_ui": idle_ui, "idle_api": idle_api, "heavy": result["heavy"], "statuses": statuses, "probes": probes,
        "rss_growth": peak[0] - before,
    }  # fmt: skip


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def uploads(url: str, home: Path, total_mb: int) -> dict[str, Any]:
    """``total_mb`` of 30 MB uploads, four at a time; the most the upload folder held, sampled as they arrive."""
    blob = os.urandom(30 * 2**20)
    count = max(1, total_mb // 30)
    folders = list(home.glob("clipzero-serve-*/uploads"))
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(folder_bytes(f) for f in folders))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: upload(url, f"blob-{i}.png", blob).status_code, range(count)))
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    return {"sent": count * 30 * 2**20, "codes": {c: codes.count(c) for c in sorted(set(codes))}, "peak": peak[0],
            "seconds": elapsed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--attackers", type=int, default=45)
    parser.add_argument("--upload-mb", type=int, default=1500)
    parser.add_argument("--checkout", type=Path, help="serve from this clipzero checkout instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        process, url = start(home, args.checkout, "--max-upload-mb", "32")
        try:
            found = stall(url, process.pid, args.copies, args.attackers)
            room = uploads(url, home, args.upload_mb)
        finally:
            process.terminate()
            process.wait(timeout=30)
        left = sorted(p.name for p in home.iterdir() if p.name.startswith("clipzero-serve-"))
    heavy_s, heavy_ok = found["heavy"]
    print(f"server: {args.checkout or ROOT}; {os.cpu_count()} cores")
    print(f"heavy UI call ({args.copies} copies of an 8000x8000 16-bit PNG): {heavy_s:.1f} s, "
          f"{'completed' if heavy_ok else 'refused'}")  # fmt: skip
    for status, times in sorted(found["statuses"].items()):
        print(f"  {len(times)} of {args.attackers} API attackers got {status}: {min(times):.1f} to {max(times):.1f} s")
    for kind, idle in (("ui", found["idle_ui"]), ("api", found["idle_api"])):
        seen = found["probes"][kind]
        worst = max(seen) if seen else float("nan")
        print(f"second client, cached {kind.upper()} classify: idle {idle:.2f} s; under load worst {worst:.2f} s "
              f"({worst / idle:.1f}x idle) over {len(seen)} requests")  # fmt: skip
    print(f"server memory grew {found['rss_growth'] / 2**20:.0f} MB under the load")
    print(f"uploads: {room['sent'] / 2**20:.0f} MB sent in {room['seconds']:.1f} s, replies {room['codes']}; the "
          f"upload folder held at most {room['peak'] / 2**20:.0f} MB")  # fmt: skip
    print(f"after SIGTERM, temp folders left: {left or 'none'}")


if __name__ == "__main__":
    main()
