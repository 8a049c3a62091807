"""Adding images to a store: unchanged files skipped, the rest through the one pipeline (or Ray), committed in
batches so a killed run keeps what it had finished."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_VIDEO_EVERY_S
from ..errors import ConfigError
from ..video import expand_videos, frame_name, is_video
from .records import AddReport, Record, canonical_path

if TYPE_CHECKING:
    from ..pipeline import Embedded, Engine
    from .store import EmbeddingStore

__all__ = ["add_images"]


def add_images(
    store: EmbeddingStore,
    paths: Iterable[str | os.PathLike[str]],
    *,
    metadata: dict[str, Any] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: Any = None,
    engine: Any = "local",
    ray: Any = None,
    shard_rows: int = 1000,
    every: float = DEFAULT_VIDEO_EVERY_S,
    scenes: bool = True,
) -> AddReport:
    """The body of :meth:`EmbeddingStore.add` (the caller holds the store's writer lock)."""
    report = AddReport()

    def changed() -> Iterator[str]:
        for raw in paths:
            path = canonical_path(os.fspath(raw))
            try:  # a video is unchanged when its first frame is stored with the video's size and time
                if store.is_unchanged(frame_name(path, 0.0) if is_video(path) else path, os.stat(path)):
                    report.unchanged += 1
                    if progress:
                        progress(1)
                    continue
            except OSError:
                pass  # the pipeline reports it with the reason
            yield path

    def frames() -> Iterator[Any]:  # videos as their sampled frames, each stored as <video>#t=<seconds>
        yield from expand_videos(changed(), every=every, scenes=scenes,
                                 on_error=lambda path, reason: report.failed.append((path, reason)))  # fmt: skip

    if engine == "local":
        from ..pipeline import embed

        assert store.encoder is not None
        batches: Iterable[list[Embedded]] = embed(frames(), store.encoder, lookup=store.vector_of,
                                                   batch_size=batch_size, workers=workers)  # fmt: skip
    else:
        batches = _elsewhere(store, list(changed()), _engine(engine, ray), shard_rows)
    for batch in batches:
        records = []
        for item in batch:
            if item.vector is None:
                report.failed.append((item.name, item.error or "could not be read"))
                continue
            report.encoded += item.encoded
            report.reused += not item.encoded
            records.append(Record.of(item))
        store.put(records, metadata=metadata)
        if progress:
            progress(len(batch))
    return report


def _engine(engine: Any, options: Any) -> Engine:
    """The engine plug: ``ray`` with its options (a :class:`~clipzero.ray_engine.RayOptions`), or any object
    with ``embed_files`` (a :class:`~clipzero.pipeline.Engine`)."""
    plug = options if engine == "ray" else engine
    if engine == "ray" and options is None:
        raise ConfigError("engine 'ray' needs its options: ray=RayOptions(...) from clipzero.ray_engine")
    if not callable(getattr(plug, "embed_files", None)):
        raise ConfigError(f"unknown engine {engine!r}: local, ray, or an engine object with embed_files")
    return plug


def _elsewhere(store: EmbeddingStore, todo: list[str], engine: Engine, shard_rows: int) -> Iterator[list[Embedded]]:
    """Batches embedded by another engine; each batch's new vectors are written to ``<store>/shards/`` before it is
    stored (a run killed in between repeats rows in a shard rather than losing vectors)."""
    from .sharded import ShardWriter, in_shards

    assert store.encoder is not None
    if not todo:
        return
    shards = ShardWriter(Path(store.path) / "shards", rows_per_shard=shard_rows)
    pairs = ((item, None) for item in engine.embed_files(todo, store.encoder))
    for batch in in_shards(pairs, shards, shard_rows):
        yield [item for item, _ in batch]
