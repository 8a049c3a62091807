"""The clipzero web demo and HTTP API on one port: `python app.py`, then open http://127.0.0.1:7860.

Options are those of `clipzero serve` (`python app.py --help`). Without --model (or CLIPZERO_MODEL) the demo runs
the bundled offline model, clipzero-shapes, so it works anywhere with one click on an example.
"""

from __future__ import annotations

import os
import sys

from clipzero.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--model" or a.startswith("--model=") or a == "-m" for a in args) and not os.environ.get(
        "CLIPZERO_MODEL"
    ):
        args = ["--model", "clipzero-shapes", *args]
    sys.exit(main(["serve", *args]))
