"""The clipzero web demo and HTTP API on one port: `python app.py`, then open http://127.0.0.1:7860.

It is `clipzero serve` exactly: the same options (`python app.py --help`) and the same defaults (the model from
--model, CLIPZERO_MODEL or the config file, else the built-in default). With no network, run the bundled model:
`python app.py --model clipzero-shapes`.
"""

from __future__ import annotations

import sys

from clipzero.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
