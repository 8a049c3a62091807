"""'None of these' with the bundled model: images of listed combinations keep their label, near misses (same colour
or same shape as a listed label) are rejected; a random-weights model still gets a sane cut; every door agrees."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import write_pictures

LISTED = [("red", "circle"), ("blue", "star"), ("green", "cross"), ("yellow", "heart")]
NEAR = [("red", "square"), ("blue", "triangle"), ("green", "circle"), ("yellow", "star"),
        ("purple", "circle"), ("orange", "star"), ("black", "cross"), ("pink", "heart")]  # fmt: skip


@pytest.fixture(scope="module")
def bundled() -> Any:
    from clipzero import load_model

    return load_model("clipzero-shapes", precision="fp32")


def _label(combo: tuple[str, str]) -> str:
    return f"{combo[0]} {combo[1]}"


def _sets() -> tuple[list[Any], list[Any]]:
    from clipzero.synthetic.world import single_object_set

    return single_object_set(LISTED, 6, seed=501), single_object_set(NEAR, 3, seed=502)


def test_auto_rejects_near_misses_and_keeps_fits_where_the_probability_cannot(bundled: Any) -> None:
    from clipzero.zeroshot import ZeroShotClassifier

    fits, misses = _sets()
    classifier = ZeroShotClassifier(bundled, [_label(c) for c in LISTED], templates="photo")
    on_fits = classifier.classify([image for image, _ in fits], reject="auto")
    on_misses = classifier.classify([image for image, _ in misses], reject="auto")
    kept = sum(p.label == _label(c) for p, (_, c) in zip(on_fits, fits))
    rejected = sum(p.label is None for p in on_misses)
    assert kept >= 22 and rejected >= 22, (kept, rejected)  # of 24 each
    for p in on_misses:  # a rejected image says why: its nearest label, its score under the cut
        assert p.rejection is not None and p.rejection.nearest == p.predictions[0].label
        assert p.rejection.rejected == (p.rejection.score < 0) == (p.label is None)
    by_probability = classifier.classify([image for image, _ in misses], threshold=0.9)
    assert sum(p.label is None for p in by_probability) <= 12  # the probability keeps most near misses


def test_a_random_weights_model_gets_a_cut_that_rejects_some_not_all(tiny_encoder: Any, tmp_path: Path) -> None:
    from clipzero.zeroshot import ZeroShotClassifier

    pictures = write_pictures(tmp_path / "pics", 40, size=(48, 48))
    classifier = ZeroShotClassifier(tiny_encoder, ["red", "green", "blue"], templates="photo")
    rule = classifier.rejection_rule("auto")
    similarities = [p.rejection.similarity for p in classifier.classify(pictures, reject="auto")]  # type: ignore[union-attr]
    assert min(similarities) != max(similarities)
    rejected = sum(s < rule.threshold for s in similarities)
    assert 0 < rejected < len(pictures), (rule, rejected)


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_python_api_http_api_and_agent_tool_give_the_same_answers(bundled: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from clipzero.service.api import create_api
    from clipzero.service.core import Service, ServiceSettings
    from clipzero.tools.toolbox import Toolbox
    from clipzero.zeroshot import ZeroShotClassifier

    fits, misses = _sets()
    images = [image for image, _ in fits[:6] + misses[:6]]
    labels = [_label(c) for c in LISTED]
    python = [p.to_dict() for p in ZeroShotClassifier(bundled, labels, templates="photo").classify(images,
                                                                                                     reject="auto")]
    service = Service(ServiceSettings(model="clipzero-shapes", precision="fp32", device="cpu", templates="photo"))
    try:
        body = {"images": [base64.b64encode(_png(i)).decode() for i in images], "labels": labels, "reject": "auto"}
        reply = TestClient(create_api(service)).post("/v1/classify", json=body)
        assert reply.status_code == 200, reply.text
        http = reply.json()["results"]
    finally:
        service.close()
    tools = Toolbox(model="clipzero-shapes", precision="fp32", device="cpu", templates="photo")
    urls = ["data:image/png;base64," + base64.b64encode(_png(i)).decode() for i in images]
    agent = tools.call("classify_images", {"images": urls, "labels": labels, "reject": "auto"})["results"]
    answers = {door: [r["label"] for r in rows] for door, rows in (("python", python), ("http", http),
                                                                     ("agent", agent))}  # fmt: skip
    assert answers["python"] == answers["http"] == answers["agent"]
    assert answers["python"].count(None) >= 5  # the near misses were rejected
    for door in (http, agent):
        np.testing.assert_allclose([r["rejection"]["score"] for r in door],
                                   [r["rejection"]["score"] for r in python], atol=2e-3)  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clipzero", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_classify_and_tag_carry_the_rejection(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    common = ["--labels", "red circle", "blue star", "--model", "clipzero-shapes", "--templates", "photo", "--reject",
              "auto"]  # fmt: skip
    result = run("classify", str(examples / "red-circle.png"), str(examples / "green-cross.png"), *common, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["label"] for r in rows] == ["red circle", None]
    assert rows[1]["rejection"]["rejected"] and rows[1]["rejection"]["nearest"] in ("red circle", "blue star")
    out = tmp_path / "tags.jsonl"
    result = run("tag", str(examples), *common, "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    tagged = {Path(r["image"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert sum(r["label"] is not None for r in tagged.values()) == 2 and len(tagged) == 8
    assert all(r["rejection"]["rejected"] == (r["label"] is None) for r in tagged.values())
    refused = run("tag", str(examples), *common, "--out", str(tmp_path / "t2.jsonl"), "--engine", "ray")
    assert refused.returncode == 2 and "--reject" in refused.stderr


def test_one_label_is_answered_yes_or_no_at_every_door(bundled: Any, tmp_path: Path) -> None:
    """Before: a single label came back at probability 1.000 for any picture, in the CLI and the UI."""
    from clipzero import ZeroShotClassifier
    from tests.serving import start_server, stop_server

    examples = Path(__file__).resolve().parents[2] / "examples"
    fits, misfits = examples / "red-circle.png", examples / "blue-star.png"
    python = ZeroShotClassifier(bundled, ["red circle"], templates="photo").classify([fits, misfits])
    assert [p.label for p in python] == ["red circle", None]
    assert python[0].rejection.score > 0 > python[1].rejection.score
    cli = subprocess.run([sys.executable, "-m", "clipzero", "classify", str(fits), str(misfits), "--labels",
                          "red circle", "--model", "clipzero-shapes", "--precision", "fp32", "--templates", "photo",
                          "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert [r["label"] for r in json.loads(cli.stdout)] == ["red circle", None]
    assert cli.stderr.count("one label:") == 1  # said once
    process, url = start_server("--no-ui", "--templates", "photo", home=tmp_path / "home")
    try:
        import httpx

        body = {"images": [base64.b64encode(p.read_bytes()).decode() for p in (fits, misfits)],
                "labels": ["red circle"]}  # fmt: skip
        served = httpx.post(f"{url}/v1/classify", json=body, timeout=120).json()["results"]
    finally:
        stop_server(process)
    assert [r.get("label") for r in served] == ["red circle", None] and served[1]["rejection"]["rejected"]
