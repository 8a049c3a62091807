"""Batch tagging: many images, one label set, results streamed to disk, nothing lost, resumable.

Decoding and preprocessing run in a pool of threads (Pillow and torchvision release the GIL for the heavy parts)
while the model encodes batches; results are written as each batch finishes, so memory stays flat. Every input
ends in exactly one place: a row of the output, or a line of ``<out>.errors.jsonl`` with the reason.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageError
from .zeroshot import Prediction, ZeroShotClassifier

if TYPE_CHECKING:
    import torch

    from .encoder import Encoder
    from .prompts import TemplateSet
    from .store import EmbeddingStore

__all__ = ["EmbeddedFile", "TagFailure", "TagResult", "TagSummary", "default_workers", "embed_files", "tag_images"]


@dataclass(frozen=True)
class TagResult:
    """One tagged image: its path as given, content hash, and the prediction (top label and top-k)."""

    path: str
    sha256: str
    prediction: Prediction
    rerank: Any = None  # a RerankResult when an LLM re-ranked the prediction

    def to_dict(self) -> dict[str, Any]:
        if self.rerank is not None:
            row = self.rerank.to_dict()
            return {
                "image": self.path,
                "sha256": self.sha256,
                "label": row["label"],
                "predictions": row["predictions"],
                "rerank": {"clip_label": row["clip_label"], **row["rerank"]},
            }
        row = self.prediction.to_dict()
        return {"image": self.path, "sha256": self.sha256, "label": row["label"], "predictions": row["predictions"]}


@dataclass(frozen=True)
class TagFailure:
    """An image that could not be tagged, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"image": self.path, "error": self.reason}


@dataclass
class TagSummary:
    """Counts and speed of one run. ``skipped`` are images already in the output (a resumed run)."""

    tagged: int = 0
    skipped: int = 0
    failed: int = 0
    encoded: int = 0
    from_store: int = 0
    elapsed: float = 0.0
    precision: str = ""
    failures: list[TagFailure] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.tagged / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tagged": self.tagged,
            "skipped": self.skipped,
            "failed": self.failed,
            "encoded": self.encoded,
            "from_store": self.from_store,
            "elapsed_s": round(self.elapsed, 2),
            "images_per_s": round(self.images_per_second, 1),
            "precision": self.precision,
        }


def default_workers() -> int:
    """Decode threads: one per core, at least two (decoding waits on disk as well as the CPU)."""
    return max(2, os.cpu_count() or 2)


@dataclass
class EmbeddedFile:
    """One input of :func:`embed_files`: its embedding, or the reason it has none."""

    path: str
    sha256: str = ""
    pixels: torch.Tensor | None = None
    vector: np.ndarray | None = None
    error: str | None = None
    stat: os.stat_result | None = None
    nbytes: int = 0
    encoded: bool = False  # embedded now (False: taken from the store, or failed)


def _prepare(path: str, encoder: Encoder, store: EmbeddingStore | None) -> EmbeddedFile:
    """Read, hash and preprocess one file (runs in a worker thread); known content skips decoding."""
    try:
        stat = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        return EmbeddedFile(path, error=f"cannot read file: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if store is not None:
        vector = store.vector_of(sha)
        if vector is not None:
            return EmbeddedFile(path, sha, vector=vector, stat=stat, nbytes=len(data))
    try:
        pixels = encoder.preprocess_images([data])[0]
    except ImageError as exc:
        return EmbeddedFile(path, sha, error=exc.reason)
    return EmbeddedFile(path, sha, pixels=pixels, stat=stat, nbytes=len(data))


def _bounded_map(pool: ThreadPoolExecutor, fn: Any, items: Iterable[str], ahead: int) -> Iterator[EmbeddedFile]:
    """Like ``pool.map`` but with at most ``ahead`` items in flight, so memory stays flat on huge inputs."""
    pending: deque[Future[EmbeddedFile]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def tag_images(
    images: Iterable[str | os.PathLike[str]],
    labels: Iterable[str] | ZeroShotClassifier,
    *,
    model: Encoder | str | None = None,
    templates: str | os.PathLike[str] | TemplateSet | Sequence[str] = "ensemble-en",
    top_k: int = 5,
    threshold: float | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    store: EmbeddingStore | None = None,
    summary: TagSummary | None = None,
    reranker: Any = None,
) -> Iterator[TagResult | TagFailure]:
    """Tag images with labels, yielding one result or failure per image, in input order.

    Args:
        images: image paths.
        labels: the candidate labels (or a ready classifier, whose encoder and labels are used).
        model: an Encoder or a model spec; None loads the configured default.
        templates: the template set for the labels.
        top_k: labels kept per image.
        threshold: below this top probability the image gets no label.
        batch_size: images per forward pass.
        workers: decode threads (default: :func:`default_workers`).
        store: an EmbeddingStore of the same model: known content is not encoded again, new content is added.
        summary: a TagSummary to fill in as the run goes.
        reranker: a :class:`~clipzero.rerank.Reranker`: each batch's top-k is re-ranked by the LLM (requests in
            parallel; a failed call keeps CLIP's order, with the reason in the result).

    Yields:
        TagResult for each tagged image, TagFailure (with the reason) for each that could not be read.

    Example:
        >>> for result in tag_images(["a.jpg", "b.jpg"], ["cat", "dog"], model="clipzero-shapes"):
        ...     print(result.to_dict())
    """
    from .models import load_model

    if isinstance(labels, ZeroShotClassifier):
        classifier = labels
    else:
        encoder = model if model is not None and not isinstance(model, str) else load_model(model)
        classifier = ZeroShotClassifier(encoder, labels, templates=templates)
    encoder = classifier.encoder
    if store is not None and store.model_id != encoder.id:
        from .errors import StoreError

        raise StoreError(f"store {store.path} holds embeddings of {store.model_id!r}, not {encoder.id!r}")
    summary = summary if summary is not None else TagSummary()
    summary.precision = encoder.precision
    start = time.perf_counter()
    for batch in embed_files(images, encoder, store=store, batch_size=batch_size, workers=workers):
        summary.encoded += sum(1 for item in batch if item.encoded)
        summary.from_store += sum(1 for item in batch if not item.encoded and item.vector is not None)
        good = [item for item in batch if item.vector is not None]
        predictions: Iterator[Prediction] = iter(())
        reranked: Iterator[Any] = iter(())
        if good:
            vectors = np.stack([item.vector for item in good])  # type: ignore[misc]  # (n, dim)
            names = [item.path for item in good]
            predicted = classifier.predict_embeddings(vectors, names, top_k=top_k, threshold=threshold)
            reranked = iter(reranker.rerank_many(predicted) if reranker is not None else [None] * len(predicted))
            predictions = iter(predicted)
        for item in batch:
            if item.vector is None:
                failure = TagFailure(item.path, item.error or "unknown error")
                summary.failed += 1
                summary.failures.append(failure)
                yield failure
            else:
                summary.tagged += 1
                yield TagResult(item.path, item.sha256, next(predictions), next(reranked))
        summary.elapsed = time.perf_counter() - start
    summary.elapsed = time.perf_counter() - start


def embed_files(
    paths: Iterable[str | os.PathLike[str]],
    encoder: Encoder,
    *,
    store: EmbeddingStore | None = None,
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[list[EmbeddedFile]]:
    """Embed image files in batches, decoding in threads while the model encodes.

    Content the store already holds is not decoded again; newly encoded content is added to the store. Each
    batch lists its inputs in order; an unreadable file has ``vector`` None and ``error`` set.
    """
    import torch

    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="clipzero-decode") as pool:
        items = (os.fspath(p) for p in paths)
        batch: list[EmbeddedFile] = []
        for item in _bounded_map(pool, lambda p: _prepare(p, encoder, store), items, ahead=4 * batch_size):
            batch.append(item)
            if len(batch) < batch_size:
                continue
            _encode(batch, encoder, store, torch)
            yield batch
            batch = []
        if batch:
            _encode(batch, encoder, store, torch)
            yield batch


def _encode(batch: list[EmbeddedFile], encoder: Encoder, store: EmbeddingStore | None, torch: Any) -> None:
    to_encode = [item for item in batch if item.pixels is not None]
    if not to_encode:
        return
    vectors = encoder.encode_pixels(torch.stack([item.pixels for item in to_encode]))
    for item, vector in zip(to_encode, vectors):
        item.vector, item.pixels, item.encoded = vector, None, True
    if store is not None:
        from .store import Record

        with store.writer():
            store.put(
                [
                    Record(i.path, i.sha256, i.nbytes, i.stat.st_size, i.stat.st_mtime_ns, i.vector)
                    for i in to_encode
                    if i.stat is not None
                ]
            )
