"""What one `clipzero classify` of one image costs, cold and warm, against bare interpreter starts on this machine.

Usage: python benchmarks/first_call.py [--repeat 3] [--json]

Baselines (each a fresh process): ``python -c "import torch"`` and ``python -c "import torch, torchvision"`` (open_clip
needs torchvision for its image transforms). Figures: ``clipzero classify one.png --model clipzero-shapes`` cold (a
new process that imports, loads and classifies), and the same with ``--server URL`` against a running ``clipzero
serve`` (the warm path: the client process imports no torch). Median wall seconds of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _wall(command: list[str], repeat: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tests.serving import start_server, stop_server

    home = Path(tempfile.mkdtemp(prefix="clipzero-first-call-"))
    env = {**os.environ, "CLIPZERO_HOME": str(home)}
    image = str(ROOT / "examples" / "red-circle.png")
    classify = [sys.executable, "-m", "clipzero", "classify", image, "--labels", "red circle", "blue star",
                "--model", "clipzero-shapes", "-q"]  # fmt: skip
    subprocess.run(classify, check=True, capture_output=True, env=env)  # fills the label cache, as a user's second call
    figures = {
        "python -c 'import torch'": _wall([sys.executable, "-c", "import torch"], args.repeat, env),
        "python -c 'import torch, torchvision'": _wall([sys.executable, "-c", "import torch, torchvision"],
                                                       args.repeat, env),
        "clipzero classify (cold)": _wall(classify, args.repeat, env),
    }
    process, url = start_server("--no-ui", home=home)
    try:
        figures["clipzero classify --server (warm)"] = _wall([*classify, "--server", url], args.repeat, env)
    finally:
        stop_server(process)
    if args.json:
        print(json.dumps({key: round(value, 2) for key, value in figures.items()}, indent=1))
        return
    torch_s = figures["python -c 'import torch'"]
    for name, seconds in figures.items():
        print(f"{name:<40} {seconds:5.2f} s   ({seconds - torch_s:+.2f} s against importing torch)")


if __name__ == "__main__":
    main()
