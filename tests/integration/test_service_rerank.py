"""The service re-ranks with the CLI's re-ranker: for the same image, labels and template set the LLM gets the same
messages (template chosen by the labels' language, per-label descriptions) and the same key; a one-label request
keeps CLIP's answer instead of failing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.conftest import write_image
from tests.llm_server import LLMServer, Reply


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_service_sends_what_the_cli_sends(
    language: str, llm_server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from clipzero.rerank.describe import write_description_set
    from clipzero.service.api import create_api
    from clipzero.service.core import Service, ServiceSettings

    labels = ["red circle", "blue star"] if language == "en" else ["红色圆形", "蓝色星形"]
    described = {labels[0]: ["a round red disc"], labels[1]: ["a blue five-pointed star"]}
    templates = write_description_set(tmp_path / f"described-{language}.json", described, language=language)
    picture = write_image(tmp_path / "red.png", (220, 20, 20), size=(64, 64))
    monkeypatch.setenv("CLIPZERO_LLM_API_KEY", "llm-secret")
    llm_server.script = lambda request: Reply('{"choice": 1, "ranking": [1, 2]}')

    service = Service(ServiceSettings(model="clipzero-shapes", precision="fp32", device="cpu",
                                      templates=str(templates), llm_url=llm_server.url, llm_model="m"))  # fmt: skip
    try:
        client = TestClient(create_api(service))
        body = {"images": [base64.b64encode(picture.read_bytes()).decode()], "labels": labels, "rerank": True}
        reply = client.post("/v1/classify", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"][0]["rerank"]["used"] is True
        one = client.post("/v1/classify", json={**body, "labels": labels[:1]})  # one label: nothing to re-rank
        assert one.status_code == 200, one.text
        assert "fewer than 2 candidates" in one.json()["results"][0]["rerank"]["fallback"]
    finally:
        service.close()
    assert len(llm_server.requests) == 1
    cli = run("classify", str(picture), "--labels", *labels, "--model", "clipzero-shapes", "--precision", "fp32",
              "--templates", str(templates), "--rerank", "--llm-url", llm_server.url, "--llm-model", "m",
              "--no-llm-cache", "--json", env={"CLIPZERO_LLM_API_KEY": "llm-secret"})  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    served, typed = llm_server.requests
    assert served["messages"] == typed["messages"]
    assert [h["authorization"] for h in llm_server.headers] == ["Bearer llm-secret"] * 2
    user = llm_server.user_text(0)
    assert described[labels[1]][0] in user  # the per-label descriptions reached the LLM
    assert any("\u4e00" <= ch <= "\u9fff" for ch in served["messages"][0]["content"]) == (language == "zh")
