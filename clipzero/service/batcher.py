"""Dynamic micro-batching: requests that arrive together are encoded together.

Request handlers announce their images when they arrive (:meth:`MicroBatcher.expect`, before decoding them), then
submit the preprocessed tensors and get futures. One encoder thread takes the first waiting image and gathers more
for up to ``max_wait_ms`` or until ``max_batch``, but only while announced images are still on their way: a lone
request is encoded at once instead of waiting out the window. Under concurrency, throughput approaches batch
throughput. With ``max_batch=1`` it is plain one-at-a-time encoding (the benchmark's baseline).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchStats", "MicroBatcher"]


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0

    @property
    def mean_batch(self) -> float:
        return self.images / self.batches if self.batches else 0.0


class MicroBatcher:
    """Encode images for many concurrent callers in shared batches.

    Args:
        encoder: the loaded :class:`~clipzero.encoder.Encoder` (used only from the batcher's thread for images).
        max_batch: most images per forward pass.
        max_wait_ms: how long to gather after the first image of a batch arrives.
    """

    def __init__(self, encoder: Any, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        self.encoder = encoder
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self._expected = 0  # images announced and not yet encoded
        self._expected_lock = threading.Lock()
        self._queue: queue.Queue[tuple[Any, Future[np.ndarray]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="clipzero-batcher", daemon=True)
        self._thread.start()

    def expect(self, count: int) -> None:
        """Announce ``count`` images that will be submitted soon (or withdraw them with a negative count)."""
        with self._expected_lock:
            self._expected = max(0, self._expected + count)

    def submit(self, pixels: Any) -> Future[np.ndarray]:
        """Queue one preprocessed image (3, H, W); the future gives its L2-normalised embedding."""
        future: Future[np.ndarray] = Future()
        self._queue.put((pixels, future))
        return future

    def encode(self, images: list[Any], timeout: float | None = None) -> np.ndarray:
        """Embed preprocessed images (blocking), sharing batches with other callers.

        Raises:
            concurrent.futures.TimeoutError: they were not all encoded within ``timeout`` seconds.
        """
        futures = [self.submit(p) for p in images]
        if not futures:
            return np.zeros((0, self.encoder.embed_dim), np.float32)
        end = None if timeout is None else time.monotonic() + timeout
        return np.stack([f.result(timeout=None if end is None else max(0.0, end - time.monotonic())) for f in futures])

    def _run(self) -> None:
        import torch

        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                if self._queue.empty() and self._expected <= len(batch):
                    break  # nothing else announced: do not wait for images nobody is sending
                remaining = deadline - time.perf_counter()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                vectors = self.encoder.encode_pixels(torch.stack([pixels for pixels, _ in batch]))
            except Exception as exc:  # resolve every waiter, never kill the thread
                self.expect(-len(batch))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.images += len(batch)
            self.expect(-len(batch))
            for (_, future), vector in zip(batch, vectors):
                future.set_result(vector)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
