"""The web UI at the scale of a real folder, in headless Chromium against a real server: 300 uploads to Batch tag and
40 to Classify with the buttons still in view, results in pages captioned label first, filtered and sorted, errors
that stay beside the last good results, a Chinese browser that gets Chinese everywhere, a phone-width page with
nothing cut off, and the Duplicates review with its list of files that could go. With CLIPZERO_SCREENSHOTS=DIR the
pages are saved there (docs/images holds the ones the docs show)."""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from tests.serving import browser_page, needs_chromium, start_server, stop_server

pytestmark = [pytest.mark.slow, needs_chromium]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VIEWPORT = {"width": 1280, "height": 900}
LABELS = ["red circle", "blue star", "green cross", "yellow heart", "purple triangle", "pink diamond", "orange square",
          "black hexagon"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 pictures of one object each, as a photo folder would hold them."""
    from clipzero.synthetic.world import render, sample_scene

    out = tmp_path_factory.mktemp("folder")
    for i in range(300):
        render(sample_scene(random.Random(i), size=160, n_objects=1)).save(out / f"photo-{i:04d}.png")
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with a store of the examples and a copy of one (so Duplicates has a group)."""
    pictures = tmp_path_factory.mktemp("indexed")
    for picture in EXAMPLES.glob("*.png"):
        shutil.copy(picture, pictures / picture.name)
    shutil.copy(EXAMPLES / "red-circle.png", pictures / "red-circle-copy.png")
    from clipzero import EmbeddingStore, load_model

    store = tmp_path_factory.mktemp("store") / "store"
    with EmbeddingStore(store, load_model("clipzero-shapes")) as opened:
        opened.add(sorted(str(p) for p in pictures.iterdir()))
    process, url = start_server("--store", str(store), home=tmp_path_factory.mktemp("home"))
    yield url
    stop_server(process)


def _shot(page: Any, name: str) -> None:
    shots = os.environ.get("CLIPZERO_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / name), full_page=True)


def _captions(page: Any, gallery: str) -> list[str]:
    return [text.strip() for text in page.locator(f"{gallery} .caption-label").all_inner_texts()]


def _fully_in_view(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"]


def _label_of(caption: str) -> str:
    """The label a caption starts with ("red circle 0.93 · photo-0001.png" -> "red circle")."""
    return next((label for label in LABELS if caption.startswith(label + " ")), "")


def test_batch_tag_of_300_files_keeps_the_button_in_view_and_pages_the_results(server: str, folder: Path) -> None:
    from playwright.sync_api import expect

    files = sorted(str(p) for p in folder.iterdir())
    with browser_page() as page:
        page.set_viewport_size(VIEWPORT)
        page.goto(server, wait_until="networkidle")
        page.get_by_role("tab", name="Batch tag").click()
        page.locator("#batch-files input[type=file]").set_input_files(files[:3])
        expect(page.locator("#batch-count")).to_contain_text("3 files", timeout=60_000)
        few = page.evaluate("document.documentElement.scrollHeight")
        page.locator("#batch-files button[aria-label='Clear']").first.click()
        page.locator("#batch-files input[type=file]").set_input_files(files)
        expect(page.locator("#batch-count")).to_contain_text("300 files", timeout=60_000)
        expect(page.locator("#batch-strip img")).to_have_count(12, timeout=30_000)  # the first few, small
        assert _fully_in_view(page, "#batch-button")  # no scrolling past a list of 300 rows
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= few + 50 and height < 2500, (few, height)  # one row per file made it 19,105 px
        page.locator("#batch-button").click()
        expect(page.locator("#batch-summary")).to_contain_text("Tagged 300 images", timeout=180_000)
        expect(page.locator("#batch-page-note")).to_contain_text("Page 1 of 5: 60 of 300 images")
        expect(page.locator("#batch-gallery img")).to_have_count(60)
        captions = _captions(page, "#batch-gallery")
        assert len(captions) == 60 and all(_label_of(c) for c in captions), captions[:5]  # label first
        assert all(c.endswith(".png") and "photo-" in c for c in captions)  # then the file name
        right = page.evaluate("Math.max(...[...document.querySelectorAll('#batch-gallery img')]"
                              ".map((e) => e.getBoundingClientRect().right))")  # fmt: skip
        assert right <= VIEWPORT["width"], right  # no column cut off at the right edge
        _shot(page, "batch-tag.png")
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.wait_for_timeout(500)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1920
        page.set_viewport_size(VIEWPORT)

        page.locator("#batch-sort").get_by_text("most confident first").click()
        expect(page.locator("#batch-gallery .caption-label").first).not_to_have_text(captions[0], timeout=30_000)
        scores = [float(c.split(" · ")[0].rsplit(" ", 1)[1]) for c in _captions(page, "#batch-gallery")]
        assert scores == sorted(scores, reverse=True) and scores[0] >= max(float(c.split(" · ")[0].rsplit(" ", 1)[1])
                                                                           for c in captions)  # fmt: skip

        chosen = _label_of(captions[0])
        page.locator("#batch-filter input").click()
        page.get_by_role("option", name=chosen, exact=True).click()
        expect(page.locator("#batch-page-note")).to_contain_text("Page 1 of", timeout=30_000)
        page.wait_for_timeout(1000)
        filtered = _captions(page, "#batch-gallery")
        assert filtered and all(_label_of(c) == chosen for c in filtered), filtered[:5]

        page.locator("#batch-filter input").click()
        page.get_by_role("option", name="(all)").click()
        expect(page.locator("#batch-page-note")).to_contain_text("of 300 images", timeout=30_000)
        page.locator("#batch-page input").fill("5")
        page.locator("#batch-page input").press("Enter")
        expect(page.locator("#batch-page-note")).to_contain_text("Page 5 of 5: 60 of 300 images", timeout=30_000)


def test_classify_of_40_files_and_errors_that_stay_beside_the_results(server: str, folder: Path,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    from playwright.sync_api import expect

    files = sorted(str(p) for p in folder.iterdir())[:40]
    with browser_page() as page:
        page.set_viewport_size(VIEWPORT)
        page.goto(server, wait_until="networkidle")
        page.locator("#classify-files input[type=file]").set_input_files(files)
        expect(page.locator("#classify-count")).to_contain_text("40 files", timeout=60_000)
        assert _fully_in_view(page, "#classify-button")
        page.locator("#classify-button").click()
        gallery = page.locator("#classify-gallery")
        expect(gallery.locator("img")).to_have_count(40, timeout=120_000)
        captions = _captions(page, "#classify-gallery")
        assert all(_label_of(c) for c in captions), captions[:5]
        expect(page.locator("#classify-selected")).to_contain_text("photo-0000.png")
        expect(page.locator("#classify-download")).to_contain_text("classify")  # the results as the CLI writes them
        with page.expect_download() as download:
            page.locator("#classify-download a").first.click()
        rows = Path(download.value.path()).read_text().splitlines()
        assert len(rows) == 41 and rows[0].startswith("image,") and "photo-0039.png" in rows[-1], rows[:2]
        gallery.locator("img").nth(3).click()  # the top-k panel says whose labels it shows
        expect(page.locator("#classify-selected")).to_contain_text("photo-0003.png", timeout=30_000)
        _shot(page, "classify.png")

        page.locator("#classify-labels textarea").fill("")  # a mistake: no labels
        page.locator("#classify-button").click()
        message = page.locator("#classify-message")
        expect(message).to_contain_text("Not done", timeout=30_000)
        expect(message).to_contain_text("label")  # the reason, not a bare "Error"
        page.wait_for_timeout(8000)  # longer than a toast lives
        expect(message).to_contain_text("Not done")
        expect(gallery.locator("img")).to_have_count(40)  # the last good results are still there
        expect(page.locator(".error, .toast-body")).to_have_count(0)  # no red pill over the outputs

        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
        page.locator("#classify-labels textarea").fill(", ".join(LABELS))
        page.locator("#classify-files button[aria-label='Clear']").first.click()
        page.locator("#classify-files input[type=file]").set_input_files([str(broken), files[0]])
        expect(page.locator("#classify-count")).to_contain_text("2 files", timeout=60_000)
        page.locator("#classify-button").click()
        expect(gallery.locator("img")).to_have_count(2, timeout=60_000)
        expect(message).to_have_text("")  # a good run clears the message
        last = _captions(page, "#classify-gallery")[-1]
        assert last.startswith("(could not be read)") and last.endswith("broken.png"), last  # the error on its tile
        expect(page.locator("#classify-chips .cz-chip")).to_have_count(0)  # single-label: the captions say it all

        page.locator("#classify-multi input").check()  # every label that applies: chips per image
        page.locator("#classify-button").click()
        chips = page.locator("#classify-chips .cz-tags")
        expect(chips).to_have_count(2, timeout=60_000)
        expect(chips.nth(0)).to_contain_text("broken.png")
        expect(chips.nth(0)).to_contain_text("(could not be read)")
        expect(chips.nth(1)).to_contain_text("photo-0000.png")
        assert chips.nth(1).locator(".cz-chip").count() >= 1


def test_a_chinese_browser_gets_chinese_everywhere(server: str, folder: Path) -> None:
    from playwright.sync_api import expect

    files = sorted(str(p) for p in folder.iterdir())[:6]
    with browser_page(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as page:
        page.set_viewport_size(VIEWPORT)
        page.goto(server, wait_until="networkidle")
        expect(page.locator("#classify-labels textarea")).to_have_value(re.compile("^红色圆形"), timeout=30_000)
        expect(page.locator("#classify-template input")).to_have_value("photo-zh")
        page.locator("#classify-files input[type=file]").set_input_files(files)
        expect(page.locator("#classify-count")).to_contain_text("6 个文件", timeout=60_000)
        page.locator("#classify-button").click()
        expect(page.locator("#classify-gallery img")).to_have_count(6, timeout=60_000)
        _shot(page, "classify-zh.png")
        _no_english(page, files)
        page.get_by_role("tab", name="批量标注").click()
        page.locator("#batch-files input[type=file]").set_input_files(files)
        expect(page.locator("#batch-count")).to_contain_text("6 个文件", timeout=60_000)
        page.locator("#batch-button").click()
        expect(page.locator("#batch-summary")).to_contain_text("已标注 6 张图片", timeout=60_000)
        _shot(page, "batch-tag-zh.png")
        _no_english(page, files)
        page.get_by_role("tab", name="重复图片").click()
        page.locator("#dedup-button").click()
        expect(page.locator("#dedup-summary")).to_contain_text("可以删除", timeout=120_000)
        expect(page.locator("#dedup-groups")).to_contain_text("保留")
        _shot(page, "duplicates-zh.png")
        _no_english(page, files)


#: Words that stay as they are in Chinese: names of formats, models, units and the framework, the API, and the
#: language switch's other choice.
_NAMES = {"csv", "jsonl", "png", "zip", "api", "gradio", "clipzero", "shapes", "photo", "zh", "sha256", "kb", "mb",
          "english"}  # fmt: skip


def _no_english(page: Any, files: list[str]) -> None:
    """No English words in the visible page, beyond file names, model names and format names."""
    text = page.locator("body").inner_text()
    names = [Path(f).name for f in files] + [n for p in EXAMPLES.glob("*.png") for n in (p.name, p.stem)]
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, " ")
    text = re.sub(r"clipzero-shapes(@sha256:[0-9a-f]+)?", " ", text)
    text = re.sub(r"[\w-]+\s*\.\s*(csv|jsonl|png)\b", " ", text)  # file names (results, the indexed folder)
    words = {w for w in re.findall(r"[A-Za-z]{2,}", text) if w.lower() not in _NAMES}
    assert not words, sorted(words)


def test_a_phone_sees_everything_and_duplicates_give_a_list_to_review(server: str, folder: Path) -> None:
    from playwright.sync_api import expect

    files = sorted(str(p) for p in folder.iterdir())[:8]
    with browser_page(viewport={"width": 390, "height": 844}, is_mobile=True) as page:
        page.goto(server, wait_until="networkidle")
        page.locator("#classify-files input[type=file]").set_input_files(files)
        expect(page.locator("#classify-count")).to_contain_text("8 files", timeout=60_000)
        page.locator("#classify-button").click()
        expect(page.locator("#classify-gallery img")).to_have_count(8, timeout=60_000)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, wide  # nothing reaches past the screen's edge
        _shot(page, "classify-phone.png")
    with browser_page() as page:
        page.set_viewport_size(VIEWPORT)
        page.goto(server, wait_until="networkidle")
        page.get_by_role("tab", name="Duplicates").click()
        page.locator("#dedup-button").click()
        expect(page.locator("#dedup-summary")).to_contain_text("1 of 8 image(s) could go", timeout=120_000)
        expect(page.locator("#dedup-groups .dedup-keep")).to_have_count(1)
        expect(page.locator("#dedup-groups")).to_contain_text("exact")
        expect(page.locator("#dedup-list")).to_contain_text("could-go")
        with page.expect_download() as download:
            page.locator("#dedup-list a").first.click()
        rows = Path(download.value.path()).read_text().splitlines()
        assert rows[0] == "group,path,keep,kinds,similarity" and len(rows) == 2, rows
        assert "red-circle" in rows[1] and rows[1].split(",")[3] == "exact"
        _shot(page, "duplicates.png")
