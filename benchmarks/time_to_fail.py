"""How long a mistake takes to be reported, against loading the bundled model, on this machine.

Usage: python benchmarks/time_to_fail.py [--repeat 3] [--checkout DIR] [--json]

Each mistake runs as a fresh ``clipzero`` process, as a user would type it: an image path that does not exist, a
folder given to classify, a misspelt model, a misspelt pretrained tag, the default model with no network
(``HF_HUB_OFFLINE=1``), ``serve`` and ``mcp --http`` on a port another server holds, ``tag`` on a folder that does
not exist and on one with no images. The yardstick is ``clipzero classify`` of one image with the bundled model,
which succeeds (import, load, classify). Median wall seconds of ``--repeat`` runs, and each mistake's share of the
yardstick. ``--checkout DIR`` runs the same against another clipzero source tree (a ``git worktree`` of an older
commit), for a before/after table on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wall(argv: list[str], repeat: int, env: dict[str, str], cwd: Path) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "clipzero", *argv], capture_output=True, env=env, cwd=cwd,
                              timeout=600)  # fmt: skip
        times.append(time.perf_counter() - start)
        code = done.returncode
    return statistics.median(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkout", type=Path, help="another clipzero source tree to time instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clipzero-time-to-fail-"))
    env = {**os.environ, "CLIPZERO_HOME": str(work / "home")}
    if args.checkout:
        env["PYTHONPATH"] = f"{args.checkout.resolve()}{os.pathsep}{env.get('PYTHONPATH', '')}"
    image = str(ROOT / "examples" / "red-circle.png")
    (work / "empty").mkdir()
    (work / "empty" / "notes.txt").write_text("no pictures here\n")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = str(holder.getsockname()[1])
    labels = ["--labels", "red circle", "blue star"]
    shapes = ["--model", "clipzero-shapes"]
    cases = {
        "yardstick: classify, bundled model (works)": (["classify", image, *labels, *shapes, "-q"], {}),
        "classify: image path does not exist": (["classify", str(work / "nope.jpg"), *labels, *shapes], {}),
        "classify: a folder instead of images": (["classify", str(work / "empty"), *labels, *shapes], {}),
        "classify: misspelt model (ViT-B-3)": (["classify", image, *labels, "--model", "ViT-B-3"], {}),
        "classify: misspelt tag (ViT-B-32:opnai)": (["classify", image, *labels, "--model", "ViT-B-32:opnai"], {}),
        "classify: default model, no network": (["classify", image, *labels], {"HF_HUB_OFFLINE": "1"}),
        "serve: port in use": (["serve", *shapes, "--port", port, "--no-ui"], {}),
        "mcp --http: port in use": (["mcp", "--http", *shapes, "--root", str(work), "--port", port], {}),
        "tag: folder does not exist": (["tag", str(work / "nope"), *labels, *shapes, "--out", str(work / "a.jsonl")],
                                       {}),
        "tag: folder without images": (["tag", str(work / "empty"), *labels, *shapes, "--out",
                                        str(work / "b.jsonl")], {}),
    }  # fmt: skip
    figures = {}
    try:
        for name, (argv, extra) in cases.items():
            figures[name] = _wall(argv, args.repeat, {**env, **extra}, (args.checkout or ROOT).resolve())
    finally:
        holder.close()
    if args.json:
        print(json.dumps({k: {"seconds": round(s, 2), "exit": c} for k, (s, c) in figures.items()}, indent=1))
        return
    yardstick = next(iter(figures.values()))[0]
    source = args.checkout or ROOT
    print(f"clipzero from {source}, {os.cpu_count()} cores; median of {args.repeat}")
    print(f"{'case':<44} {'seconds':>8} {'exit':>5} {'of yardstick':>13}")
    for name, (seconds, code) in figures.items():
        print(f"{name:<44} {seconds:8.2f} {code:5d} {seconds / yardstick:12.0%}")


if __name__ == "__main__":
    main()
