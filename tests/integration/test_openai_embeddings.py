"""POST /v1/embeddings through the official `openai` client against a real `clipzero serve` process: the same
vectors as /v1/embed for texts and for data-URL images, in both encodings, with the server's key rule."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import write_image
from tests.serving import start_server, stop_server

openai = pytest.importorskip("openai")
KEY = "embeddings-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server("--api-key", KEY, "--no-ui", home=tmp_path_factory.mktemp("embeddings-home"))
    yield url
    stop_server(process)


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _embed(url: str, **body: list[str]) -> np.ndarray:
    reply = httpx.post(f"{url}/v1/embed", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["vectors"], np.float32)


@pytest.mark.slow
def test_the_openai_client_gets_the_vectors_of_v1_embed(server: str, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    texts = ["a photo of a red circle.", "一张蓝色星形的照片。"]
    pictures = [write_image(tmp_path / f"{i}.png", colour, size=(64, 64))
                for i, colour in enumerate([(220, 20, 20), (20, 20, 220)])]  # fmt: skip
    images = [_data_url(p) for p in pictures]
    for encoding in (None, "float", "base64"):  # None: the SDK asks for base64 itself and decodes it
        extra = {"encoding_format": encoding} if encoding else {}
        reply = client.embeddings.create(model="clipzero-shapes", input=texts + images, **extra)  # type: ignore[arg-type]
        if encoding == "base64":  # asked for explicitly, the SDK hands the base64 text over as it came
            got = np.stack([np.frombuffer(base64.b64decode(str(item.embedding)), "<f4") for item in reply.data])
        else:
            got = np.asarray([item.embedding for item in reply.data], np.float32)
        assert [item.index for item in reply.data] == [0, 1, 2, 3]
        np.testing.assert_allclose(got[:2], _embed(server, texts=texts), atol=1e-6)
        np.testing.assert_allclose(got[2:], _embed(server, images=[u.split(",", 1)[1] for u in images]), atol=1e-6)
        assert reply.model.startswith("clipzero-shapes") and reply.usage.prompt_tokens > 0
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    one = client.embeddings.create(model="clipzero-shapes", input="a red circle", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == got.shape[1]


@pytest.mark.slow
def test_wrong_requests_get_openai_style_errors(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="this server runs model"):
        client.embeddings.create(model="text-embedding-3-small", input="a cat")
    with pytest.raises(openai.BadRequestError, match="not an image"):
        client.embeddings.create(model="clipzero-shapes", input=["data:image/png;base64,bm90IGFuIGltYWdl"])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="clipzero-shapes", input="a cat"
        )
