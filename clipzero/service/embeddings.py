"""``POST /v1/embeddings``, compatible with OpenAI's embeddings API, so the OpenAI SDK, LangChain or LlamaIndex can
use clipzero as their embedding backend by changing a base URL.

Each ``input`` item is a text, or an image given as a ``data:image/...;base64,`` URL (the convention multimodal
embedding servers follow); texts and images share one space, so either can be compared with the other. The
response has OpenAI's shape: ``data[i].embedding`` (a list of floats, or with ``encoding_format="base64"`` the
little-endian float32 bytes in base64, which the OpenAI SDK asks for by default), ``model`` and ``usage``
(``prompt_tokens`` counts text tokens of the model's tokenizer; images count none).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import RequestError
from .core import NotAvailable, Service, decode_base64

__all__ = ["EmbeddingsJSON", "openai_embeddings"]

_IMAGE_PREFIX = "data:image/"


class EmbeddingsJSON(BaseModel):
    """An OpenAI embeddings request."""

    model_config = ConfigDict(extra="forbid")
    input: str | list[str] = Field(description="a text or an image data URL, or a list of them")
    model: str = Field(description="the server's model (its id or spec, as /v1/models reports)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, description="must equal the model's embedding size if given")
    user: str | None = None


def openai_embeddings(service: Service, body: EmbeddingsJSON, deadline: float | None = None) -> dict[str, Any]:
    """The response for one request: texts and images embedded (in input order), in OpenAI's format.

    Raises:
        NotAvailable: the request names a model this server does not run.
        RequestError: no input, a wrong ``dimensions``, or over the server's per-request limits.
        ImageError: an image data URL that is not a readable image (the error names its index).
    """
    encoder = service.encoder
    if body.model not in (encoder.id, encoder.spec):
        raise NotAvailable(f"this server runs model {encoder.spec!r} (id {encoder.id!r}), not {body.model!r}")
    if body.dimensions is not None and body.dimensions != encoder.embed_dim:
        raise RequestError(f"dimensions must be {encoder.embed_dim} for this model (it cannot shorten its vectors)")
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise RequestError("input is empty: give a text, an image data URL, or a list of them")
    images = [(i, item) for i, item in enumerate(items) if item.startswith(_IMAGE_PREFIX)]
    texts = [(i, item) for i, item in enumerate(items) if not item.startswith(_IMAGE_PREFIX)]
    vectors = np.zeros((len(items), encoder.embed_dim), np.float32)
    if images:
        decoded = [(f"input[{i}]", decode_base64(url, f"input[{i}]")) for i, url in images]
        vectors[[i for i, _ in images]] = service.embed_images(decoded, deadline)
    tokens = 0
    if texts:
        vectors[[i for i, _ in texts]] = service.embed_texts([text for _, text in texts])
        tokens = sum(min(encoder.count_tokens(text), encoder.context_length) for _, text in texts)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
        for i, vector in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": encoder.id, "usage": {"prompt_tokens": tokens,
                                                                           "total_tokens": tokens}}  # fmt: skip


def _encode(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
