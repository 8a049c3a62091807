"""The web UI at folder scale: the page height and where the action button is after uploading 40 files to Classify
and 300 to Batch tag, in headless Chromium at 1280 x 900 (Debian's chromium, `make browser`).

Usage: python benchmarks/ui_pages.py [--checkout DIR] [--files 300]

``--checkout DIR`` measures another checkout's UI the same way (its own `clipzero serve`), for a before/after table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))


def measure(url: str, files: list[str], classify: int = 40) -> dict[str, float]:
    from tests.serving import browser_page

    found: dict[str, float] = {}
    with browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(url, wait_until="networkidle")
        for tab, box, button, count in (("Classify", "#classify-files", "#classify-button", classify),
                                        ("Batch tag", "#batch-files", "#batch-button", len(files))):  # fmt: skip
            page.get_by_role("tab", name=tab).click()
            page.locator(f"{box} input[type=file]").set_input_files(files[:count])
            time.sleep(4 + 0.04 * count)  # the uploads, then the count line and the strip
            key = tab.lower().replace(" ", "_")
            found[f"{key}_files"] = count
            found[f"{key}_page_height"] = page.evaluate("document.documentElement.scrollHeight")
            found[f"{key}_button_top"] = page.locator(button).bounding_box()["y"]  # type: ignore[index]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkout", type=Path, help="also measure this checkout's UI (before/after)")
    parser.add_argument("--files", type=int, default=300)
    args = parser.parse_args()
    from clipzero.synthetic.world import render, sample_scene
    from tests.serving import start_server, stop_server

    folder = Path(tempfile.mkdtemp(prefix="clipzero-ui-"))
    files = []
    for i in range(args.files):
        path = folder / f"photo-{i:04d}.png"
        render(sample_scene(random.Random(i), size=160, n_objects=1)).save(path)
        files.append(str(path))
    results = {}
    for name, checkout in [("this checkout", HERE)] + ([("checkout " + str(args.checkout), args.checkout.resolve())]
                                                       if args.checkout else []):  # fmt: skip
        home = folder / f"home-{len(results)}"
        process, url = start_server(home=home, env={"PYTHONPATH": str(checkout)}, cwd=home)
        try:
            results[name] = measure(url, files)
        finally:
            stop_server(process)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
