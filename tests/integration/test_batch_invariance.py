"""A vector is a function of its input: the same text (or image) alone and inside a batch of others gets the same
vector, at every precision, through encode_texts/encode_pixels, POST /v1/embed, the openai client's
/v1/embeddings and the MCP SDK client's `embed` tool."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving import start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEXT = "a photo of a blue star."
#: 20 other texts of many lengths, shorter and longer than TEXT (a batch's longest text used to set its length).
OTHERS = [f"a {'very ' * (i % 9)}small drawing of shape number {i}" for i in range(19)] + ["star"]
KEY = "invariance-key"


def _spread(vectors: np.ndarray, alone: np.ndarray) -> float:
    return float(np.abs(vectors - alone).max())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_text_and_an_image_alone_and_in_a_batch_get_one_vector(precision: str) -> None:
    import torch

    from clipzero import load_model

    encoder = load_model("clipzero-shapes", device="cpu", precision=precision)
    alone = encoder.encode_texts([TEXT])[0]
    for position in (0, 7, 20):  # first, among shorter and longer texts, last
        batch = [*OTHERS[:position], TEXT, *OTHERS[position:]]
        assert _spread(encoder.encode_texts(batch)[position], alone) == 0.0, position
    assert _spread(encoder.encode_texts([TEXT] * 3 + OTHERS, batch_size=4)[:3], alone) == 0.0
    assert _spread(encoder.encode_texts([*OTHERS, TEXT], batch_size=1)[-1], alone) == 0.0

    pictures = sorted(EXAMPLES.glob("*.png"))
    pixels = encoder.preprocess_images(pictures)
    together = encoder.encode_pixels(torch.cat([pixels, pixels.flip(0)]))
    for row in (0, 3, 7):
        lone = encoder.encode_pixels(pixels[row : row + 1])[0]
        assert _spread(together[row], lone) <= 1e-6 and _spread(together[15 - row], lone) <= 1e-6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server("--api-key", KEY, "--no-ui", home=tmp_path_factory.mktemp("invariance-home"))
    yield url
    stop_server(process)


def _v1_embed(url: str, **body: Any) -> np.ndarray:
    reply = httpx.post(f"{url}/v1/embed", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["vectors"], np.float32)


@pytest.mark.slow
def test_every_door_gives_a_text_and_an_image_the_same_vector_alone_and_in_a_batch(server: str) -> None:
    openai = pytest.importorskip("openai")
    pictures = sorted(EXAMPLES.glob("*.png"))
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in pictures]
    doors: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    alone = _v1_embed(server, texts=[TEXT])[0]
    doors["/v1/embed texts"] = (alone, _v1_embed(server, texts=[*OTHERS[:10], TEXT, *OTHERS[10:]])[10])
    lone_image = _v1_embed(server, images=[encoded[2]])[0]
    doors["/v1/embed images"] = (lone_image, _v1_embed(server, images=encoded)[2])

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)

    def sdk(items: list[str]) -> np.ndarray:
        reply = client.embeddings.create(model="clipzero-shapes", input=items, encoding_format="float")
        return np.asarray([item.embedding for item in reply.data], np.float32)

    doors["/v1/embeddings texts"] = (sdk([TEXT])[0], sdk([*OTHERS, TEXT])[-1])
    urls = [f"data:image/png;base64,{e}" for e in encoded]
    doors["/v1/embeddings images"] = (sdk([urls[2]])[0], sdk(urls)[2])
    doors["mcp embed"] = _mcp_alone_and_batched(pictures)

    for door, (one, batched) in doors.items():
        assert _spread(batched, one) <= 1e-6, door
    assert _spread(doors["/v1/embeddings texts"][0], alone) <= 1e-6  # and the doors agree with each other
    assert _spread(doors["mcp embed"][0], alone) <= 1e-6


def _mcp_alone_and_batched(pictures: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("mcp")
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "clipzero", "mcp", "--model",
                                   "clipzero-shapes", "--root", str(EXAMPLES)], env=dict(os.environ))  # fmt: skip

    async def session() -> tuple[np.ndarray, np.ndarray]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            one = await client.call_tool("embed", {"texts": [TEXT]})
            many = await client.call_tool("embed", {"texts": [*OTHERS[:5], TEXT, *OTHERS[5:]],
                                                    "images": [p.name for p in pictures]})  # fmt: skip
            assert not one.is_error and not many.is_error, (one.content, many.content)
            return (np.asarray(one.structured_content["texts"][0], np.float32),
                    np.asarray(many.structured_content["texts"][5], np.float32))  # fmt: skip

    return anyio.run(session)
