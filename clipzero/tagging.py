"""Batch tagging: many images, one label set, results streamed to disk, nothing lost, resumable.

Images become vectors through :mod:`clipzero.pipeline` (threaded decode while the model encodes) on the local
engine, or through :mod:`clipzero.ray_engine` (Ray Data decode tasks and an encoder actor pool) on the Ray
engine; both yield the same :class:`TagResult` and :class:`TagFailure` objects, so the writers, the error report
and resume are the same. Every input ends in exactly one place: a row of the output, or a line of
``<out>.errors.jsonl`` with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_VIDEO_EVERY_S
from .errors import ConfigError, StoreError
from .multilabel import check_views
from .pipeline import Embedded, embed
from .zeroshot import Prediction, ZeroShotClassifier, predict_embedded

if TYPE_CHECKING:
    from .encoder import Encoder
    from .outputs import ResultWriter
    from .prompts import TemplateSet
    from .ray_engine import RayOptions
    from .store import EmbeddingStore
    from .video import VideoTracker

__all__ = ["TagFailure", "TagResult", "TagSummary", "VideoSummary", "check_engine", "tag_images", "tag_into"]


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
        found = {"image": self.path, "sha256": self.sha256, "label": row["label"], "predictions": row["predictions"]}
        for extra in ("labels", "rejection"):
            if extra in row:
                found[extra] = row[extra]
        return found


@dataclass(frozen=True)
class TagFailure:
    """An image that could not be tagged, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"image": self.path, "error": self.reason}


@dataclass(frozen=True)
class VideoSummary:
    """A video's row after its frames: the label of most frames, each label's share and first and last time."""

    path: str
    row: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.row


@dataclass
class TagSummary:
    """Counts and speed of one run. ``skipped`` are images already in the output (a resumed run)."""

    tagged: int = 0
    skipped: int = 0
    failed: int = 0
    encoded: int = 0
    from_store: int = 0
    videos: int = 0
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
            **({"videos": self.videos} if self.videos else {}),
            "elapsed_s": round(self.elapsed, 2),
            "images_per_s": round(self.images_per_second, 1),
            "precision": self.precision,
        }


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
    reject: str | None = None,
    min_similarity: float | None = None,
    summary: TagSummary | None = None,
    reranker: Any = None,
    engine: str = "local",
    ray: RayOptions | None = None,
    shards: str | os.PathLike[str] | None = None,
    shard_rows: int = 1000,
    videos: VideoTracker | None = None,
    multi_label: bool = False,
    views: int | None = None,
) -> Iterator[TagResult | TagFailure | VideoSummary]:
    """Tag images with labels, yielding one result or failure per image (and per video frame, with a summary per
    video).

    Args:
        images: image paths.
        labels: the candidate labels (or a ready classifier, whose encoder and labels are used).
        model: an Encoder or a model spec; None loads the configured default.
        templates: the template set for the labels.
        top_k: labels kept per image.
        threshold: below this top probability the image gets no label.
        reject, min_similarity: no label for an image that fits none of the labels (``auto``: the model's calibrated
            cut; or a cosine similarity cut); see :mod:`clipzero.rejection`.
        batch_size: images per forward pass.
        workers: decode threads (default: one per core, at least 2).
        store: an EmbeddingStore of the same model: known content is not encoded again, new content is added.
        summary: a TagSummary to fill in as the run goes.
        reranker: a :class:`~clipzero.rerank.Reranker`: each batch's top-k is re-ranked by the LLM (requests in
            parallel; a failed call keeps CLIP's order, with the reason in the result).
        engine: ``local`` (results in input order) or ``ray`` (Ray Data; results as they come back).
        ray: how to run on Ray (engine ``ray``).
        shards: engine ``ray``: a folder for Parquet shards of the embeddings (for a sharded index), written
            before the results they hold are yielded.
        shard_rows: rows per shard, and per group of results yielded on Ray.
        videos: how video files are sampled (a :class:`~clipzero.video.VideoTracker`; default every 2 s and at
            scene changes): each frame is tagged as ``<video>#t=<seconds>``, and after a video's last frame comes
            its :class:`VideoSummary`.
        multi_label: every label that applies (the prediction's ``tags``), scored on ``views`` views of each image
            (default :data:`clipzero.multilabel.DEFAULT_VIEWS`); a store keeps each image's whole-image vector.

    Yields:
        TagResult for each tagged image or frame, TagFailure (with the reason) for each that could not be read,
        VideoSummary for each video.

    Raises:
        ConfigError: the Ray engine with a store or a re-ranker (it tags with labels only).

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
        raise StoreError(f"store {store.path} holds embeddings of {store.model_id!r}, not {encoder.id!r}")
    summary = summary if summary is not None else TagSummary()
    summary.precision = encoder.precision
    check_engine(engine, store=store is not None, rerank=reranker is not None,
                 head=type(classifier) is not ZeroShotClassifier,
                 reject=bool(reject) or min_similarity is not None or multi_label)  # fmt: skip
    if multi_label and (reranker is not None or reject or threshold is not None):
        raise ConfigError("multi-label tagging decides each label on its own: no re-ranker, reject or threshold")
    start = time.perf_counter()
    if engine == "ray":
        batches = _ray_batches(images, classifier, top_k, threshold, ray, shards, shard_rows)
    else:
        from .video import VideoTracker

        videos = videos if videos is not None else VideoTracker()
        images = videos.sources(images)
        lookup = store.vector_of if store is not None else None
        cut = {"threshold": threshold, "reject": reject, "min_similarity": min_similarity, "multi_label": multi_label}
        count = check_views(views) if multi_label else 1
        batches = _local_batches(images, classifier, top_k, cut, batch_size, workers, lookup, store, count)
    for batch in batches:
        summary.encoded += sum(1 for item, _ in batch if item.encoded)
        summary.from_store += sum(1 for item, _ in batch if not item.encoded and item.vector is not None)
        predicted = [p for _, p in batch if p is not None]
        reranked = iter(reranker.rerank_many(predicted) if reranker is not None else [None] * len(predicted))
        for item, prediction in batch:
            if prediction is None:
                failure = TagFailure(item.name, item.error or "unknown error")
                summary.failed += 1
                summary.failures.append(failure)
                if videos is not None:
                    videos.note(failure)
                yield failure
            else:
                summary.tagged += 1
                result = TagResult(item.name, item.sha256, prediction, next(reranked))
                if videos is not None:
                    videos.note(result)
                yield result
        yield from _finished_videos(videos, summary)
        summary.elapsed = time.perf_counter() - start
    yield from _finished_videos(videos, summary)
    summary.elapsed = time.perf_counter() - start


def _finished_videos(videos: VideoTracker | None, summary: TagSummary) -> Iterator[TagFailure | VideoSummary]:
    for path, outcome in videos.finished() if videos is not None else ():
        if isinstance(outcome, str):
            failure = TagFailure(path, outcome)
            summary.failed += 1
            summary.failures.append(failure)
            yield failure
        else:
            summary.videos += 1
            yield VideoSummary(path, outcome)


def tag_into(
    writer: ResultWriter,
    images: Sequence[str | os.PathLike[str]],
    classifier: Any,
    *,
    batch_size: int = 32,
    summary: TagSummary | None = None,
    on_progress: Callable[[int, int, TagSummary], None] | None = None,
    every: float = DEFAULT_VIDEO_EVERY_S,
    scenes: bool = True,
    **options: Any,
) -> TagSummary:
    """Tag ``images`` into a result file: the resumable run every door uses (``clipzero tag``, the agent tool).

    Images already in the file (``writer.done``) are skipped; each result becomes a row, each failure a line of the
    error report, and the file is made durable after every batch, so a run stopped at any point loses at most the
    batch in flight and the next run goes on from there. A video's frames are rows of their own
    (``<video>#t=<seconds>``), followed by the video's summary row; a video stopped part-way goes on from its first
    frame not in the file, and its summary counts the frames of both runs. The writer is closed, completed only when
    every image was handled.

    Args:
        writer: the :class:`~clipzero.outputs.ResultWriter` of the output.
        images: image and video paths (as the rows will name them).
        classifier: the zero-shot classifier (or a trained head).
        batch_size: images per batch, and per flush.
        summary: a TagSummary to fill in (``skipped`` counts the images already in the file).
        on_progress: called after each batch with (inputs handled, inputs to handle, the summary so far).
        every, scenes: how videos are sampled: every ``every`` seconds, and at scene changes.
        **options: the rest of :func:`tag_images`' arguments (``top_k``, ``threshold``, ``store``, ...).

    Returns:
        The summary of the run.
    """
    from .video import VideoTracker, parse_frame_name

    todo = [p for p in images if os.fspath(p) not in writer.done]
    summary = summary if summary is not None else TagSummary()
    summary.skipped += len(images) - len(todo)
    videos = VideoTracker(every=every, scenes=scenes, skip=writer.done.__contains__, earlier=_earlier_frames(writer))
    completed = False
    handled = 0
    try:
        results = tag_images(todo, classifier, batch_size=batch_size, summary=summary, videos=videos, **options)
        for n, result in enumerate(results, 1):
            if isinstance(result, TagFailure):
                writer.write_error(result.to_dict())
            else:
                writer.write(result.to_dict())
            handled += parse_frame_name(result.path) is None  # an input: an image, a video's summary or failure
            if n % batch_size == 0 or handled == len(todo):
                writer.flush()
                if on_progress is not None:
                    on_progress(handled, len(todo), summary)
        completed = True
    finally:
        writer.close(completed=completed)
    return summary


def _earlier_frames(writer: ResultWriter) -> Callable[[str], list[dict[str, Any]]]:
    """A video's frame rows already in the output (read once, when a resumed video first needs them)."""
    from .outputs import read_results
    from .video import parse_frame_name

    grouped: dict[str, list[dict[str, Any]]] | None = None
    before = set(writer.done)  # rows of earlier runs only: this run's are counted as they come

    def rows_of(video: str) -> list[dict[str, Any]]:
        nonlocal grouped
        if grouped is None:
            grouped = {}
            if any(parse_frame_name(name) is not None for name in before):
                writer.flush()
                kind = "jsonl" if writer.format == "parquet" else writer.format
                for row in read_results(writer.rows_path, kind):
                    frame = parse_frame_name(str(row.get("image", "")))
                    if frame is not None and row["image"] in before:
                        grouped.setdefault(frame[0], []).append(row)
        return grouped.get(video, [])

    return rows_of


def check_engine(engine: str, *, store: bool = False, rerank: bool = False, head: bool = False,
                 reject: bool = False) -> None:  # fmt: skip
    """The engine can do the request (no model needed): ``local`` does everything, ``ray`` tags with labels only.

    Raises:
        ConfigError: an unknown engine, or Ray asked to use a store, a re-ranker or a trained head.
    """
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {engine!r}: local or ray")
    if engine == "ray" and (store or rerank or head or reject):
        raise ConfigError("--engine ray tags with --labels or --labels-file only (no --head, --rerank, --store, "
                          "--reject or --min-similarity)")  # fmt: skip


Batch = list[tuple[Embedded, "Prediction | None"]]


def _local_batches(images: Iterable[str | os.PathLike[str]], classifier: ZeroShotClassifier, top_k: int,
                   cut: dict[str, Any], batch_size: int, workers: int | None, lookup: Any,
                   store: EmbeddingStore | None, views: int = 1) -> Iterator[Batch]:  # fmt: skip
    for batch in embed(images, classifier.encoder, lookup=lookup, batch_size=batch_size, workers=workers,
                       views=views):  # fmt: skip
        if store is not None and views == 1:
            store.keep(batch)
        elif store is not None:  # a store holds whole images: each item's first view
            store.keep([replace(item, vector=item.vector[0]) if item.vector is not None else item for item in batch])
        predicted = predict_embedded(classifier, batch, top_k=top_k, **cut)
        yield [(item, p if item.vector is not None else None) for item, p in zip(batch, predicted)]


def _ray_batches(images: Iterable[str | os.PathLike[str]], classifier: ZeroShotClassifier, top_k: int,
                 threshold: float | None, options: RayOptions | None, shards: str | os.PathLike[str] | None,
                 shard_rows: int) -> Iterator[Batch]:  # fmt: skip
    from .ray_engine import ray_embed
    from .store.sharded import ShardWriter, in_shards
    from .video import is_video

    writer = ShardWriter(Path(shards), rows_per_shard=shard_rows) if shards is not None else None
    classify = {"labels": classifier.labels, "templates": classifier.templates, "top_k": top_k,
                "threshold": threshold}  # fmt: skip
    encoder = classifier.encoder
    paths = [os.fspath(p) for p in images]
    if any(is_video(p) for p in paths):
        raise ConfigError("--engine ray tags pictures only: tag video files with the local engine")
    pairs = ray_embed(paths, spec=encoder.spec, precision=encoder.precision, adapter=encoder.adapter,
                      classify=classify, options=options)  # fmt: skip
    yield from in_shards(pairs, writer, shard_rows)
