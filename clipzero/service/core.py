"""The service's state: one loaded model, a micro-batcher, a label cache shared by every request, limits."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClipzeroError, ImageError, LabelError, RequestError
from .fairness import LANE_PIXELS, DeadlineExceeded, DecodeLane, ServerBusy, check_deadline, decoded_pixels

__all__ = [
    "DeadlineExceeded",
    "NotAvailable",
    "PayloadTooLarge",
    "ServerBusy",
    "Service",
    "ServiceSettings",
    "Unauthorized",
    "deadline_after",
]


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
    device: str | None = None  # None: the configured default (CLIPZERO_DEVICE, config file, auto)
    adapter: str | None = None
    head: str | None = None  # a trained head (linear probe file or cache adapter folder), used when no labels are sent
    store: Path | None = None
    api_key: str | None = None
    max_upload_mb: float = 32.0  # per request body, API and UI alike
    max_images: int = 64  # per request
    max_labels: int = 1000  # per request
    max_label_chars: int = 300  # per label (and per search text)
    max_pixels: int = 64_000_000  # per image
    max_request_pixels: int = 256_000_000  # decoded pixels per request, priced from headers before any decoding
    max_zip_entries: int = 2000  # per archive in the UI's batch tagging
    max_unzip_mb: float = 1024.0  # uncompressed bytes read from the archives of one request
    request_timeout_s: float = 60.0  # a request still working after this gets 503 (the UI's batch tag: 10x)
    max_temp_mb: float = 1024.0  # the upload folder's quota: uploads, result files, pictures served back
    upload_keep_s: float = 900.0  # files in the upload folder are removed this long after they were written
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the bound address and localhost
    allowed_origins: tuple[str, ...] = ()  # other sites whose pages may call this server (CORS)
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    micro_batching: bool = True
    templates: str | None = None  # None: the configured default (CLIPZERO_TEMPLATES, config file, ensemble-en)
    llm_url: str | None = None
    llm_model: str | None = None
    calibration: Path | None = None  # a calibration file (clipzero calibrate) applied to every zero-shot request

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_temp_bytes(self) -> int:
        return int(self.max_temp_mb * 1024 * 1024)

    @property
    def keep_uploads_s(self) -> float:
        """How long uploads are kept: never less than the longest request may still read them (batch tag)."""
        return max(self.upload_keep_s, 10 * self.request_timeout_s)

    @property
    def max_body_strings(self) -> int:
        """The most JSON strings one request body may hold: every image, name, label and file argument the
        largest request may carry (the UI's file arguments take about 16 each), with room to spare."""
        return 16 * (self.max_images + self.max_zip_entries) + 2 * self.max_labels + 1024


def decode_base64(data: str, name: str) -> bytes:
    text = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(name, "not valid base64") from exc


def deadline_after(seconds: float) -> float:
    """The monotonic time a request started now must be done by."""
    return time.monotonic() + seconds


def _remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (0 once it has passed: a wait then times out at once), or None for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Service:
    """Everything requests share: the model (loaded once), the batcher, classifiers by label set, the store.

    Args:
        settings: limits and wiring.
        upload_root: the folder UI uploads land in (the only place a UI file argument may point into).
    """

    def __init__(self, settings: ServiceSettings, upload_root: Path | None = None) -> None:
        from ..factory import check_model, open_encoder, open_store, resolve_model, resolve_templates
        from ..labelsets import ClassifierCache
        from ..pipeline import Decoder
        from .batcher import MicroBatcher

        self.settings = settings
        self.upload_root = upload_root
        self._dedup_lock = threading.Lock()  # a dedup reads every vector: one at a time
        self.default_templates = resolve_templates(settings.templates)
        choice = check_model(resolve_model(settings.model, device=settings.device, precision=settings.precision,
                                           adapter=settings.adapter, store=settings.store))  # fmt: skip
        self.store: Any = open_store(settings.store, choice) if settings.store is not None else None
        encoder: Any = open_encoder(choice) if self.store is None else self.store.encoder
        self.encoder = encoder
        from ..factory import open_calibration

        self.calibration = open_calibration(settings.calibration, encoder.id)
        self.decoder = Decoder.for_encoder(encoder, settings.max_pixels)  # its draft size and pixel limit
        self.batcher = MicroBatcher(
            self.encoder,
            max_batch=settings.max_batch if settings.micro_batching else 1,
            max_wait_ms=settings.batch_wait_ms,
        )
        self.head = None
        if settings.head:
            from ..factory import open_classifier

            self.head = open_classifier(encoder, head=settings.head)
        self._text_slot = threading.Semaphore(1)  # new label sets (and texts) are encoded one at a time
        self._classifiers = ClassifierCache(encoder, self.default_templates, size=64, text_slot=self._text_slot,
                                            calibration=self.calibration)  # fmt: skip
        self.quota: Any = None  # the upload folder's quota (server.create_app sets it)
        self.lane = DecodeLane()  # large decodes: a few slots and a short queue (fairness.py)
        self._rerankers: dict[str, Any] = {}  # by template-set content hash: the factory's re-ranker for it
        self.has_llm = False
        if settings.llm_url or settings.llm_model or _configured_llm():
            self._reranker_for(self.default_templates)  # a wrong LLM setting fails at start, not per request
            self.has_llm = True

    def _reranker_for(self, templates: Any) -> Any:
        """The CLI's re-ranker (same template choice by language, descriptions and key) for a template set."""
        from ..factory import open_reranker

        found = self._rerankers.get(templates.content_hash)
        if found is None:
            found = open_reranker(templates, llm_url=self.settings.llm_url, llm_model=self.settings.llm_model)
            self._rerankers[templates.content_hash] = found
        return found

    # -- building blocks ------------------------------------------------------------------------------------------
    def classifier(self, labels: list[str], templates: str | list[str] | None, deadline: float | None = None) -> Any:
        """A classifier for a label set, kept for reuse (label embeddings are also in the shared label caches).

        A label set nobody asked for before is encoded by the first request that needs it, outside every lock
        that other requests wait on; a second request for the same set waits for that one encode.
        """
        from .guard import check_labels

        if not labels and self.head is not None:
            return self.head  # the server's trained head, with its own classes
        if not labels:
            raise LabelError("no labels given")
        check_labels(labels, max_labels=self.settings.max_labels, max_chars=self.settings.max_label_chars)
        try:
            return self._classifiers.get(labels, templates, timeout=_remaining(deadline))
        except FutureTimeout as exc:
            raise DeadlineExceeded("the label set was still being encoded at this server's time limit") from exc

    def decoder_for(self, views: int = 1) -> Any:
        """The pipeline's decoder for this model, at one view or several (each decoded once, then cropped)."""
        return self.decoder if views == 1 else type(self.decoder).for_encoder(self.encoder, self.decoder.max_pixels,
                                                                               views)  # fmt: skip

    def preprocess(self, data: bytes, name: str, pixels: int | None = None, deadline: float | None = None,
                   views: int = 1) -> Any:  # fmt: skip
        """Decode and preprocess one uploaded image through the pipeline; ImageError names it and the reason.

        Args:
            pixels: its price (:meth:`price`); a large image is decoded in the lane, waiting at most until
                ``deadline``.
            views: 1, or the views of the image (a (views, 3, H, W) tensor comes back).

        Raises:
            ImageError: unreadable. ServerBusy: a large image and the lane's queue is full. DeadlineExceeded.
        """
        from ..pipeline import prepare

        decoder = self.decoder_for(views)
        if pixels is None:
            pixels = decoded_pixels(data, decoder.draft)
        if pixels > LANE_PIXELS:
            item = self.lane.run(lambda: prepare(data, decoder), deadline)
        else:
            item = prepare(data, decoder)
        if item.error is not None:
            raise ImageError(name, item.error)
        return item.pixels

    def thumbnail(self, data: bytes, side: int = 256, deadline: float | None = None) -> Any:
        """A small RGB copy of an uploaded image for the UI; a large one is decoded in the lane like any other.

        Raises:
            ImageError: unreadable. ServerBusy, DeadlineExceeded: as :meth:`preprocess`.
        """
        from ..images import thumbnail

        def make() -> Any:
            return thumbnail(data, side, max_pixels=self.settings.max_pixels)

        return self.lane.run(make, deadline) if decoded_pixels(data, (side, side)) > LANE_PIXELS else make()

    def price(self, images: list[tuple[str, bytes]], views: int = 1) -> list[int]:
        """Each image's decoded pixels, read from headers (at its views' draft size); over the request's budget
        (``max_request_pixels``; images over ``max_pixels`` are refused one by one, not counted) it is refused.

        Raises:
            PayloadTooLarge: over the budget, before anything is decoded.
        """
        draft = self.decoder_for(views).draft
        costs = [decoded_pixels(data, draft) for _, data in images]
        limit = self.decoder.max_pixels
        total = sum(c for c in costs if limit is None or c <= limit)
        budget = self.pixel_budget
        if total > budget:
            raise PayloadTooLarge(
                f"these {len(images)} images decode to {total:,} pixels, over this server's budget of {budget:,} "
                "per request (--max-request-pixels): send fewer or smaller images per request"
            )
        return costs

    @property
    def pixel_budget(self) -> int:
        """Decoded pixels one request may cost (never less than one image at the per-image limit)."""
        return max(self.settings.max_request_pixels, self.settings.max_pixels)

    def check_images(self, images: list[tuple[str, bytes]]) -> None:
        if not images:
            raise RequestError("no images given")
        if len(images) > self.settings.max_images:
            raise RequestError(
                f"{len(images)} images, over this server's limit of {self.settings.max_images} per request"
            )

    # -- operations ----------------------------------------------------------------------------------------------
    def embed_partial(
        self, images: list[tuple[str, bytes]], deadline: float | None = None, views: int = 1
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Embeddings of the readable images, in order, and the reason for each unreadable one (by position); with
        ``views``, (n, views, dim): each view goes to the micro-batcher as an image of its own."""
        self.check_images(images)
        costs = self.price(images, views)  # the whole request is priced (repeats included) before anything is decoded
        self.batcher.expect(len(images) * views)  # so that requests decoding now are waited for
        pixels, errors = [], {}
        try:
            for index, (name, data) in enumerate(images):
                check_deadline(deadline)  # a request its client stopped waiting for stops here
                try:
                    found = self.preprocess(data, name, costs[index], deadline, views)
                    pixels += list(found) if views > 1 else [found]
                except ImageError as exc:
                    errors[index] = exc.reason
                    self.batcher.expect(-views)
        except BaseException:
            self.batcher.expect(-(len(images) - len(errors)) * views)  # none of this request's images will come
            raise
        try:
            vectors = self.batcher.encode(pixels, timeout=_remaining(deadline))
        except FutureTimeout as exc:
            raise DeadlineExceeded("images were still being encoded at this server's time limit") from exc
        return (vectors.reshape(-1, views, vectors.shape[-1]) if views > 1 else vectors), errors

    def embed_images(self, images: list[tuple[str, bytes]], deadline: float | None = None) -> np.ndarray:
        """Embeddings of every image; ImageError names the first unreadable one."""
        vectors, errors = self.embed_partial(images, deadline)
        if errors:
            index = min(errors)
            raise ImageError(images[index][0], errors[index])
        return vectors

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        from .guard import check_labels

        if not texts:
            raise RequestError("no texts given")
        check_labels(texts, max_labels=self.settings.max_labels, max_chars=self.settings.max_label_chars)
        with self._text_slot:
            return self.encoder.encode_texts(texts)

    def classify(
        self,
        images: list[tuple[str, bytes]],
        labels: list[str],
        *,
        templates: str | list[str] | None = None,
        top_k: int = 5,
        threshold: float | None = None,
        rerank: bool = False,
        deadline: float | None = None,
        reject: str | None = None,
        min_similarity: float | None = None,
        multi_label: bool = False,
        views: int | None = None,
    ) -> list[dict[str, Any]]:
        """One result per image, in order: its predictions, or ``{"image", "error"}`` for an unreadable one.

        Raises:
            ImageError: no image could be read (the message names each and why).
        """
        from ..multilabel import check_views
        from ..rejection import check_reject

        self.check_images(images)
        check_reject(reject, min_similarity)
        if rerank and (reject or min_similarity is not None):
            raise RequestError("rerank does not combine with reject or min_similarity: choose one way to say 'none of "
                             "these'")  # fmt: skip
        if multi_label and (rerank or reject or threshold is not None):
            raise RequestError("multi_label decides each label on its own: leave out rerank, reject and threshold "
                               "(min_similarity sets a raw cut on the best view)")  # fmt: skip
        count = check_views(views) if multi_label else 1
        classifier = self.classifier(labels, templates, deadline)
        predictions = self.predict_partial(
            classifier, images, top_k=max(top_k, 5 if rerank else 1), threshold=threshold, deadline=deadline,
            reject=reject, min_similarity=min_similarity, views=count if multi_label else None,
        )  # fmt: skip
        readable = [p for p in predictions if p.error is None]
        if not readable:
            raise ImageError("no image could be read", "; ".join(f"{p.image}: {p.error}" for p in predictions))
        rows = iter(self._rerank(readable, classifier, top_k) if rerank else [p.to_dict() for p in readable])
        return [next(rows) if p.error is None else p.to_dict() for p in predictions]

    def predict_partial(
        self,
        classifier: Any,
        images: list[tuple[str, bytes]],
        *,
        top_k: int = 5,
        threshold: float | None = None,
        deadline: float | None = None,
        reject: str | None = None,
        min_similarity: float | None = None,
        views: int | None = None,
    ) -> list[Any]:
        """One :class:`~clipzero.zeroshot.Prediction` per image, in order; an unreadable image's has ``error``.
        With ``views``, multi-label predictions from that many views of each image."""
        from ..zeroshot import Prediction

        vectors, errors = self.embed_partial(images, deadline, views or 1)
        names = [name for i, (name, _) in enumerate(images) if i not in errors]
        if views is not None:
            found = iter(classifier.predict_multi(vectors, names, top_k=top_k, min_similarity=min_similarity))
        else:
            found = iter(classifier.predict_embeddings(vectors, names, top_k=top_k, threshold=threshold,
                                                       reject=reject, min_similarity=min_similarity))  # fmt: skip
        return [
            Prediction(image=name, label=None, error=errors[i]) if i in errors else next(found)
            for i, (name, _) in enumerate(images)
        ]

    def _rerank(self, predictions: list[Any], classifier: Any, top_k: int) -> list[dict[str, Any]]:
        if not self.has_llm:
            raise NotAvailable("this server has no LLM for re-ranking (start it with --llm-url and --llm-model)")
        templates = getattr(classifier, "templates", None) or self.default_templates
        rows = []
        for result in self._reranker_for(templates).rerank_many(predictions):
            row = result.to_dict()
            row["predictions"] = row["predictions"][:top_k]
            rows.append(row)
        return rows

    def search(
        self, *, text: str | None = None, image: bytes | None = None, top_k: int = 10, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """The store's nearest images to a text (always read as text, never as a path) or to an image's bytes."""
        from .guard import check_labels

        if self.store is None:
            raise NotAvailable("this server has no embedding store (start it with --store DIR)")
        if (text is None) == (image is None):
            raise RequestError("give exactly one of a text or an image")
        if text is not None:
            check_labels([text], max_labels=1, max_chars=self.settings.max_label_chars)
            vector = self.encoder.encode_texts([text])[0]
        else:
            vector = self.embed_images([("query image", image or b"")], deadline)[0]
        return [hit.to_dict() for hit in self.store.search(vector, top_k=top_k)]

    def dedup(self, threshold: float | None = None, exact_only: bool = False, verify: bool = True,
              deadline: float | None = None, kinds: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """The store's duplicate groups (:func:`clipzero.dedup.find_duplicates`), one run at a time."""
        from ..dedup import find_duplicates
        if self.store is None:
            raise NotAvailable("this server has no embedding store (start it with --store DIR)")
        with self._dedup_lock:  # and the work stops once the request's time is up, not only its reply
            return find_duplicates(self.store, threshold, exact_only=exact_only, verify=verify, kinds=kinds,
                                   stop=lambda: check_deadline(deadline, "the dedup")).to_dict()

    def close(self) -> None:
        self.batcher.close()
        self.lane.close()
        if self.store is not None:
            self.store.close()


def _configured_llm() -> bool:
    from ..config import load_settings

    settings = load_settings()
    return bool(settings.llm_url and settings.llm_model)
