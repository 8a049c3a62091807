"""The service's state: one loaded model, a micro-batcher, a label cache shared by every request, limits."""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClipzeroError, ImageError, LabelError

__all__ = ["PayloadTooLarge", "Service", "ServiceSettings", "Unauthorized", "split_labels"]


class PayloadTooLarge(ClipzeroError):
    """An upload over the configured size limit."""


class Unauthorized(ClipzeroError):
    """A missing or wrong API key."""


class NotAvailable(ClipzeroError):
    """A feature this server was started without (no store, no LLM)."""


@dataclass
class ServiceSettings:
    """How the service runs; every limit is configurable (flags of ``clipzero serve``)."""

    model: str | None = None
    precision: str | None = None
    device: str = "auto"
    adapter: str | None = None
    head: str | None = None  # a trained head (linear probe file or cache adapter folder), used when no labels are sent
    store: Path | None = None
    api_key: str | None = None
    max_upload_mb: float = 32.0  # per request
    max_images: int = 64  # per request
    max_labels: int = 1000  # per request
    max_pixels: int = 64_000_000  # per image
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    micro_batching: bool = True
    templates: str = "ensemble-en"
    llm_url: str | None = None
    llm_model: str | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def split_labels(text: str | list[str] | None) -> list[str]:
    """Labels from a list, or from text separated by commas or newlines."""
    if text is None:
        return []
    items = text if isinstance(text, list) else text.replace("\r", "\n").replace(",", "\n").split("\n")
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def decode_base64(data: str, name: str) -> bytes:
    text = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(name, "not valid base64") from exc


class Service:
    """Everything requests share: the model (loaded once), the batcher, classifiers by label set, the store."""

    def __init__(self, settings: ServiceSettings) -> None:
        from ..config import load_settings
        from ..encoder import default_precision, resolve_device
        from ..models import load_model
        from .batcher import MicroBatcher

        self.settings = settings
        configured = load_settings()
        device = settings.device or configured.device
        precision = settings.precision or default_precision(resolve_device(device))
        self.store: Any = None
        self.encoder: Any
        if settings.store is not None:
            from ..store import open_store

            self.store = open_store(settings.store, settings.model, device=device, precision=precision,
                                    adapter=settings.adapter)  # fmt: skip
            self.encoder = self.store.encoder
        else:
            self.encoder = load_model(settings.model or configured.model, device=device, precision=precision,
                                      adapter=settings.adapter)  # fmt: skip
        self.batcher = MicroBatcher(
            self.encoder,
            max_batch=settings.max_batch if settings.micro_batching else 1,
            max_wait_ms=settings.batch_wait_ms,
        )
        self.head = None
        if settings.head:
            from ..finetune.heads import load_head

            self.head = load_head(settings.head, self.encoder)
        self._classifiers: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()  # text encoding and the classifier table
        self.reranker_client = None
        if settings.llm_url and settings.llm_model:
            from ..rerank.client import ChatClient

            self.reranker_client = ChatClient(settings.llm_url, settings.llm_model)

    # -- building blocks ------------------------------------------------------------------------------------------
    def classifier(self, labels: list[str], templates: str | None) -> Any:
        """A classifier for a label set, kept for reuse (label embeddings are also in the shared label cache)."""
        from ..zeroshot import ZeroShotClassifier

        if not labels and self.head is not None:
            return self.head  # the server's trained head, with its own classes
        if not labels:
            raise LabelError("no labels given")
        if len(labels) > self.settings.max_labels:
            raise LabelError(f"{len(labels)} labels, over this server's limit of {self.settings.max_labels}")
        key = (tuple(labels), templates or self.settings.templates)
        with self._lock:
            found = self._classifiers.get(key)
            if found is None:
                found = ZeroShotClassifier(self.encoder, labels, templates=key[1])
                self._classifiers[key] = found
                while len(self._classifiers) > 64:
                    self._classifiers.popitem(last=False)
            else:
                self._classifiers.move_to_end(key)
        return found

    def preprocess(self, data: bytes, name: str) -> Any:
        """Decode and preprocess one uploaded image; ImageError names it and the reason."""
        from ..images import load_image

        if not data:
            raise ImageError(name, "empty file")
        try:
            image = load_image(data, max_pixels=self.settings.max_pixels, draft=self.encoder._draft)
        except ImageError as exc:
            raise ImageError(name, exc.reason) from exc
        return self.encoder.preprocess(image)

    def check_images(self, images: list[tuple[str, bytes]]) -> None:
        if not images:
            raise LabelError("no images given")
        if len(images) > self.settings.max_images:
            raise LabelError(
                f"{len(images)} images, over this server's limit of {self.settings.max_images} per request"
            )

    # -- operations ----------------------------------------------------------------------------------------------
    def embed_images(self, images: list[tuple[str, bytes]]) -> np.ndarray:
        self.check_images(images)
        self.batcher.expect(len(images))  # so that requests decoding now are waited for
        try:
            pixels = [self.preprocess(data, name) for name, data in images]
        except BaseException:
            self.batcher.expect(-len(images))
            raise
        return self.batcher.encode(pixels)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            raise LabelError("no texts given")
        if len(texts) > self.settings.max_labels:
            raise LabelError(f"{len(texts)} texts, over this server's limit of {self.settings.max_labels}")
        with self._lock:
            return self.encoder.encode_texts(texts)

    def classify(
        self,
        images: list[tuple[str, bytes]],
        labels: list[str],
        *,
        templates: str | None = None,
        top_k: int = 5,
        threshold: float | None = None,
        rerank: bool = False,
    ) -> list[dict[str, Any]]:
        classifier = self.classifier(labels, templates)
        vectors = self.embed_images(images)
        predictions = classifier.predict_embeddings(
            vectors, [name for name, _ in images], top_k=max(top_k, 5 if rerank else 1), threshold=threshold
        )
        if not rerank:
            return [p.to_dict() for p in predictions]
        if self.reranker_client is None:
            raise NotAvailable("this server has no LLM for re-ranking (start it with --llm-url and --llm-model)")
        from ..rerank.reranker import Reranker

        language = getattr(classifier.templates, "language", None)
        reranker = Reranker(self.reranker_client, "cot-zh" if language == "zh" else "cot-en", top_k=min(5, len(labels)))
        results = reranker.rerank_many(predictions)
        rows = []
        for result in results:
            row = result.to_dict()
            row["predictions"] = row["predictions"][:top_k]
            rows.append(row)
        return rows

    def search(self, query: str | np.ndarray, top_k: int = 10) -> list[dict[str, Any]]:
        if self.store is None:
            raise NotAvailable("this server has no embedding store (start it with --store DIR)")
        return [hit.to_dict() for hit in self.store.search(query, top_k=top_k)]

    def image_vector(self, data: bytes, name: str) -> np.ndarray:
        return self.embed_images([(name, data)])[0]

    def close(self) -> None:
        self.batcher.close()
        if self.store is not None:
            self.store.close()


def configured_api_key(explicit: str | None) -> str | None:
    return explicit or os.environ.get("CLIPZERO_API_KEY") or None
