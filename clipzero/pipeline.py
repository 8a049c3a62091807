"""The one path from images to vectors, used by every door: classify, tag, the store, the service, Ray and eval.

An image given as a path, encoded bytes or a PIL image goes through the same steps everywhere:

1. **read + hash**: a path is read once (regular files only) and its bytes hashed (sha256), bytes are hashed;
2. **known-vector lookup**: a caller that already holds vectors by content (an embedding store) passes a callable
   ``sha256 -> vector | None``; known content is neither decoded nor encoded, and content repeated within one run
   is encoded once;
3. **decode**: :func:`clipzero.images.load_image` at draft size (a JPEG decodes at the smallest DCT scale still at
   least the model's input), then the model's preprocessing; in a bounded pool of threads, so memory stays flat;
4. **encode**: batches through the encoder (or a function the caller passes, such as the service's micro-batcher);
5. **per-image errors**: an image that cannot be read or decoded gets its reason, worded the same at every door
   (the wording of :class:`~clipzero.errors.ImageError`), and the others go on.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ImageError
from .images import DEFAULT_MAX_PIXELS, Decoder, ImageSource, NamedImage, decode, read_image_file, source_name

if TYPE_CHECKING:

    from .encoder import Encoder

__all__ = [
    "Decoder",
    "Embedded",
    "Engine",
    "Lookup",
    "decode",
    "default_workers",
    "embed",
    "embed_all",
    "prepare",
]

#: A known-vector lookup: the vector stored for content with this sha256, or None.
Lookup = Callable[[str], "np.ndarray | None"]
#: Encodes preprocessed images: a list of (3, H, W) tensors -> float32 (n, dim), L2-normalised.
EncodeFn = Callable[[list[Any]], np.ndarray]

#: Vectors of content encoded earlier in one run, kept so a repeated file is not encoded twice.
_MEMO_ENTRIES = 4096


class Engine(Protocol):
    """Embeds files somewhere other than this process's decode threads: the plug through which a store (or any
    caller) is handed another engine without importing it. :class:`clipzero.ray_engine.RayOptions` is one."""

    def embed_files(self, paths: Sequence[str], encoder: Encoder) -> Iterator[Embedded]:
        """One :class:`Embedded` per path (read, hashed, decoded and encoded as :func:`embed` does), in any order."""
        ...


def default_workers() -> int:
    """Decode threads: one per core, at least two (decoding waits on disk as well as the CPU)."""
    from .machine import usable_cores

    return max(2, usable_cores())


@dataclass
class Embedded:
    """One input's outcome: its vector, or the reason it has none.

    Attributes:
        name: the path as given, or a description for bytes and PIL images.
        sha256: the content hash of a path's or bytes' data ("" for a PIL image, or when unreadable).
        vector: float32 (dim,), L2-normalised; None on error.
        error: why the image has no vector, or None.
        encoded: True when encoded in this run (False: known content, or an error).
        nbytes: the length of the data read.
        size, mtime_ns: the file's size and modification time, when the input was a readable path (0 otherwise).
    """

    name: str
    sha256: str = ""
    vector: np.ndarray | None = None
    error: str | None = None
    encoded: bool = False
    nbytes: int = 0
    size: int = 0
    mtime_ns: int = 0
    pixels: Any = field(default=None, repr=False)  # the preprocessed tensor until encoded
    repeat: Any = field(default=None, repr=False)  # content seen earlier in this run: its source, until resolved


def prepare(
    source: ImageSource, decoder: Decoder, lookup: Lookup | None = None, seen: Callable[[str], bool] | None = None
) -> Embedded:
    """Read, hash, look up and decode one input (safe to run in a worker thread); never raises ImageError.

    Args:
        source: a path, encoded bytes or a PIL image.
        decoder: the model's :class:`Decoder`.
        lookup: known vectors by content hash; a hit is neither decoded nor encoded.
        seen: True for a hash met earlier in this run (its vector is taken from that one, not encoded again).
    """
    name = source_name(source)
    item = Embedded(name)
    data: ImageSource = source
    try:
        if isinstance(source, NamedImage):  # a video frame: named and identified by its source
            item.sha256, item.size, item.mtime_ns = source.sha256, source.size, source.mtime_ns
        if isinstance(source, (str, os.PathLike)):
            data, stat = read_image_file(source)
            item.size, item.mtime_ns = stat.st_size, stat.st_mtime_ns
        if isinstance(data, bytes):
            item.sha256, item.nbytes = hashlib.sha256(data).hexdigest(), len(data)
    except ImageError as exc:
        item.error = exc.reason
        return item
    if item.sha256 and lookup is not None:
        item.vector = lookup(item.sha256)
        if item.vector is not None:
            return item
    if item.sha256 and seen is not None and seen(item.sha256):
        item.repeat = source  # resolved after the first copy is encoded
        return item
    try:
        item.pixels = decode(data, decoder, name)
    except ImageError as exc:
        item.error = exc.reason
    return item


class _Memo:
    """Hashes met in one run, and the vectors of the most recent ones (so repeated content is encoded once)."""

    def __init__(self) -> None:
        self.pending: set[str] = set()  # seen, not yet encoded
        self.vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self.failed: OrderedDict[str, str] = OrderedDict()

    def seen(self, sha: str) -> bool:
        # Called from decode threads (set operations are atomic under the GIL). Two copies decoded at once may
        # claim out of order; a repeat whose first copy is not encoded yet is then encoded itself (see _finish).
        if sha in self.pending or sha in self.vectors or sha in self.failed:
            return True
        self.pending.add(sha)
        return False

    def keep(self, sha: str, vector: np.ndarray | None, error: str | None = None) -> None:
        self.pending.discard(sha)
        table: OrderedDict[str, Any] = self.vectors if vector is not None else self.failed
        table[sha] = vector if vector is not None else error
        if len(table) > _MEMO_ENTRIES:
            table.popitem(last=False)


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Embedded], items: Iterable[Any], ahead: int
                 ) -> Iterator[Embedded]:  # fmt: skip
    """``pool.map`` with at most ``ahead`` items in flight, in input order."""
    pending: deque[Future[Embedded]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _stack_encoder(encoder: Encoder, views: int = 1) -> EncodeFn:
    def encode(pixels: list[Any]) -> np.ndarray:
        import torch

        batch = torch.stack(pixels)
        if views > 1:  # (n, views, ...): every view of the batch in one pass -> (n, views, dim)
            return encoder.encode_pixels(batch.flatten(0, 1)).reshape(batch.shape[0], views, -1)
        return encoder.encode_pixels(batch)  # (n, 3, H, W) -> (n, dim)

    return encode


def _finish(batch: list[Embedded], encode: EncodeFn, memo: _Memo, decoder: Decoder, lookup: Lookup | None) -> None:
    """Encode a batch's decoded images and fill in repeated content from the run's memo."""
    fresh = [item for item in batch if item.pixels is not None]
    if fresh:
        vectors = encode([item.pixels for item in fresh])
        for item, vector in zip(fresh, vectors):
            item.vector, item.pixels, item.encoded = np.asarray(vector, np.float32), None, True
    for item in batch:
        if item.sha256 and item.repeat is None and (item.encoded or item.error):
            memo.keep(item.sha256, item.vector if item.encoded else None, item.error)
    for item in batch:
        if item.repeat is None:
            continue
        source, item.repeat = item.repeat, None
        item.vector = memo.vectors.get(item.sha256)
        if item.vector is None and lookup is not None:
            item.vector = lookup(item.sha256)
        if item.vector is not None:
            continue
        item.error = memo.failed.get(item.sha256)
        if item.error is None:  # the first copy is gone from the memo: this one is decoded and encoded itself
            again = prepare(source, decoder)
            if again.pixels is not None:
                item.vector, item.encoded = encode([again.pixels])[0], True
            else:
                item.error = again.error or "could not be decoded"


def embed(
    sources: Iterable[ImageSource],
    encoder: Encoder,
    *,
    lookup: Lookup | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    encode: EncodeFn | None = None,
    views: int = 1,
) -> Iterator[list[Embedded]]:
    """Embed images in batches: read and hash, skip known content, decode in threads, encode, report errors.

    Args:
        sources: paths, encoded bytes or PIL images (any mix), consumed lazily.
        encoder: the model.
        lookup: known vectors by content hash (an :class:`~clipzero.store.EmbeddingStore`'s ``vector_of``).
        batch_size: images per forward pass (and per yielded list).
        workers: decode threads (default :func:`default_workers`; 0 decodes in the calling thread).
        max_pixels: refuse larger images before decoding.
        encode: encodes a list of preprocessed tensors (default: the encoder, one forward pass per batch).
        views: 1, or how many views of each image to embed (:func:`clipzero.images.view_boxes`): each vector is
            then (views, dim), the whole image first; ``lookup`` is not used (a store holds whole images only).

    Yields:
        Lists of :class:`Embedded`, at most ``batch_size`` long, in input order; every input appears once.

    Example:
        >>> for batch in embed(["a.jpg", "b.jpg"], encoder):
        ...     print([(item.name, item.error or item.vector.shape) for item in batch])
    """
    decoder = Decoder.for_encoder(encoder, max_pixels, views)
    encode = encode or _stack_encoder(encoder, views)
    lookup = lookup if views == 1 else None
    memo = _Memo()

    def work(source: ImageSource) -> Embedded:
        return prepare(source, decoder, lookup, memo.seen)

    batch: list[Embedded] = []
    if workers == 0:
        prepared: Iterator[Embedded] = (work(s) for s in sources)
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="clipzero-decode")
        prepared = _bounded_map(pool, work, sources, ahead=4 * batch_size)
    try:
        for item in prepared:
            batch.append(item)
            if len(batch) >= batch_size:
                _finish(batch, encode, memo, decoder, lookup)
                yield batch
                batch = []
        if batch:
            _finish(batch, encode, memo, decoder, lookup)
            yield batch
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def embed_all(sources: Sequence[ImageSource], encoder: Encoder, **options: Any) -> list[Embedded]:
    """:func:`embed` collected into one list, in input order."""
    return [item for batch in embed(sources, encoder, **options) for item in batch]
