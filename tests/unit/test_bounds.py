"""Bounds checked before work: JSON screened on its bytes, images priced from their headers, the decode lane,
text shown inert, schema errors that never echo a value, damaged files handled."""

from __future__ import annotations

import io
import json
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzero.service.fairness import LANE_PIXELS, DeadlineExceeded, DecodeLane, ServerBusy, decoded_pixels
from clipzero.service.screen import BodyRefused, screen_json


def test_screen_refuses_deep_nesting_and_string_floods_and_passes_real_requests() -> None:
    real = json.dumps({"images": ["aGVsbG8="] * 64, "labels": ["[red] circle", "{blue} star"] * 50}).encode()
    screen_json(real, max_strings=1000)
    with pytest.raises(BodyRefused) as deep:
        screen_json(b"[" * 5000 + b"]" * 5000, max_strings=1000)
    assert deep.value.status == 400 and deep.value.kind == "NestedTooDeep"
    brackets_in_strings = json.dumps({"labels": ["[" * 500, "{" * 500]}).encode()
    screen_json(brackets_in_strings, max_strings=1000)  # brackets inside a label are not nesting
    escaped = json.dumps({"labels": ['say \\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' + '"']}).encode()
    screen_json(escaped, max_strings=1000)
    with pytest.raises(BodyRefused) as flood:
        screen_json(b'{"images": [' + b",".join([b'"eA=="'] * 5000) + b"]}", max_strings=1000)
    assert flood.value.status == 422 and flood.value.kind == "TooManyItems"


def test_images_are_priced_from_their_headers_a_jpeg_at_its_draft_scale() -> None:
    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(big, format="JPEG")
    png = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 20, 30)).save(png, format="PNG")
    assert decoded_pixels(png.getvalue(), (224, 224)) == 12_000_000
    assert decoded_pixels(big.getvalue(), None) == 12_000_000
    assert decoded_pixels(big.getvalue(), (224, 224)) == 500 * 375  # libjpeg decodes it at 1/8 scale
    assert decoded_pixels(b"not an image", (224, 224)) == 0  # the pipeline says why it is unreadable
    assert decoded_pixels(b"\0" * (5 * 2**20), None) > LANE_PIXELS  # unknown and large: never free


def test_the_lane_queues_a_few_and_refuses_the_rest_at_once() -> None:
    lane = DecodeLane(slots=1, queue=1)
    release = threading.Event()
    entered = threading.Event()

    def block() -> str:
        entered.set()
        release.wait(10)
        return "held"

    results: list[str] = []
    holder = threading.Thread(target=lambda: results.append(lane.run(block, None)))
    holder.start()
    entered.wait(5)
    waiter = threading.Thread(target=lambda: results.append(lane.run(lambda: "waited", time.monotonic() + 10)))
    waiter.start()
    while lane.waiting == 0:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(ServerBusy):
        lane.run(lambda: "never", time.monotonic() + 10)
    assert time.monotonic() - started < 0.5 and lane.refused == 1  # told at once, no thread held
    release.set()
    holder.join()
    waiter.join()
    assert sorted(results) == ["held", "waited"] and lane.waiting == 0
    release.clear()
    entered.clear()
    ran: list[bool] = []
    holder = threading.Thread(target=lambda: lane.run(block, None))
    holder.start()
    entered.wait(5)
    with pytest.raises(DeadlineExceeded):
        lane.run(lambda: ran.append(True), time.monotonic() + 0.2)
    release.set()
    holder.join()
    lane.close()
    assert ran == [] and lane.waiting == 0  # past its deadline before it started: dropped, never run


def test_lane_threads_run_at_a_lower_priority() -> None:
    import os

    if not hasattr(os, "getpriority"):
        pytest.skip("no per-thread priorities here")
    lane = DecodeLane(slots=1)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = lane.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), None)
    lane.close()
    assert theirs > mine  # nicer: small requests' threads get the CPU first
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_inert_text_shows_html_and_markdown_as_written() -> None:
    from clipzero.service.uitext import inert

    shown = inert("<img src=x onerror=alert(1)> **bold** [link](http://x)\n# heading\n1. item\n- item")
    assert "<" not in shown and "&lt;img" in shown
    assert "\\*\\*bold\\*\\*" in shown and "\\[link\\]" in shown
    assert "\\# heading" in shown and "1\\. item" in shown and "\\- item" in shown
    assert inert("purple-triangle.png") == "purple-triangle.png"  # ordinary names stay readable


def test_schema_errors_name_the_field_never_the_value() -> None:
    from jsonschema import Draft202012Validator

    from clipzero.agent.server import _schema_problem

    schema = {"type": "object", "properties": {"labels": {"type": "array", "items": {"type": "string",
              "maxLength": 300}}, "top_k": {"type": "integer"}}, "additionalProperties": False}  # fmt: skip
    huge = "x" * 26_000_000
    problems = [_schema_problem(e) for e in Draft202012Validator(schema).iter_errors(
        {"labels": [huge], "top_k": huge, huge: 1})]  # fmt: skip
    assert all(len(p) < 200 for p in problems), [p[:100] for p in problems]
    assert "labels/0: is longer than 300 characters" in problems and 'top_k: must be of type "integer"' in problems


def test_an_empty_store_file_is_the_damaged_store_error(tmp_path: Path) -> None:
    from clipzero.errors import StoreError
    from clipzero.store import EmbeddingStore

    (tmp_path / "store.sqlite").write_bytes(b"")
    with pytest.raises(StoreError, match="damaged or is not a clipzero store"):
        EmbeddingStore(tmp_path)
    from clipzero import load_model

    with pytest.raises(StoreError, match="the file is empty"):
        EmbeddingStore(tmp_path, load_model("clipzero-shapes", precision="fp32"))


def test_a_damaged_label_cache_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    from clipzero.labelcache import LabelCache

    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = LabelCache(path, 100)
    key = ("model", "templates", "red circle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.put_many({key: np.ones(4, np.float32)})
    assert any("moved aside" in str(w.message) for w in caught)
    assert len(list(tmp_path.glob("labels.sqlite.damaged-*"))) == 1
    assert key in cache.get_many([key]) and len(LabelCache(path, 100).get_many([key])) == 1  # rebuilt, on disk


def test_batches_stay_within_the_count_and_the_pixel_budget() -> None:
    from clipzero.service.fairness import batches_within

    costs = [10, 10, 50, 60, 5, 5, 5, 200, 1]
    batches = list(batches_within(costs, 3, 100, lambda c: c))
    assert batches == [[10, 10, 50], [60, 5, 5], [5], [200], [1]]
    assert [c for b in batches for c in b] == costs  # nothing lost, order kept


def test_the_upload_quota_counts_arriving_bytes_and_sweeps_old_files(tmp_path: Path) -> None:
    import os

    from clipzero.service.quota import UploadQuota

    quota = UploadQuota(tmp_path, limit_bytes=1000, keep_s=60)
    (tmp_path / "ui.png").write_bytes(b"u" * 5)
    quota.pin_existing()  # the UI's own files, there at start
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "old.png").write_bytes(b"x" * 595)
    assert quota.reserve(300, most=500) == 300  # 600 on disk + 300 arriving
    assert quota.reserve(200, most=500) is None and quota.refused == 1  # 1,100 would pass the quota
    assert quota.reserve(None, most=500) == 100  # a chunked upload gets the room that is left
    quota.release(300)
    quota.release(100)
    old = time.time() - 3600
    for name in ("a/old.png", "ui.png"):
        os.utime(tmp_path / name, (old, old))
    assert quota.sweep() == 0  # a copy that kept an old modification time was placed just now
    (tmp_path / "new.png").write_bytes(b"y" * 10)
    assert quota.sweep(now=time.time() + 120) == 2  # two minutes on: the uploads go, the UI's own file stays
    assert [p.name for p in tmp_path.rglob("*")] == ["ui.png"]
    assert quota.used() == 5 and quota.reserve(900, most=1000) == 900
