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
    from ..pipeline import Embedded
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
    engine: str = "local",
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
    elif engine == "ray":
        batches = _on_ray(store, list(changed()), ray, shard_rows)
    else:
        raise ConfigError(f"unknown engine {engine!r}: local or ray")
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


def _on_ray(store: EmbeddingStore, todo: list[str], options: Any, shard_rows: int) -> Iterator[list[Embedded]]:
    """Batches embedded on Ray; each batch's new vectors are written to ``<store>/shards/`` before it is stored."""
    from ..ray_engine import ray_embed
    from .sharded import ShardWriter, in_shards

    assert store.encoder is not None
    shards = ShardWriter(Path(store.path) / "shards", rows_per_shard=shard_rows)
    pairs = ray_embed(todo, spec=store.encoder.spec, precision=store.encoder.precision, adapter=store.encoder.adapter,
                      options=options)  # fmt: skip
    for batch in in_shards(pairs, shards, shard_rows):
        yield [item for item, _ in batch]
