"""No client slows the others: every request's image work is priced before it starts, and heavy work waits in
one bounded lane.

* **Priced before decoding.** :func:`decoded_pixels` reads only an image's header (a JPEG's at the reduced scale
  the model's draft size allows) and says how many pixels decoding it will produce. A request's images, repeats of
  one upload included, are added up and a request over ``max_request_pixels`` is refused (413) before any of it
  is decoded.
* **Heavy work in one lane.** Images of more than :data:`LANE_PIXELS` decoded pixels are decoded by the
  :class:`DecodeLane`: a pool of a few threads (one per two cores) at a lower CPU priority, so that small requests
  are served first on a busy machine, and a short, bounded queue. A request that finds the queue full is told at
  once that the server is busy (503, ``Retry-After``) instead of holding a worker thread while it waits, so a
  flood of large images cannot take the threads that small requests need. A wait ends at the request's deadline,
  and a decode that has not started by then is dropped.
* **Work past the deadline is abandoned.** :func:`check_deadline` is called between images; a request whose
  client already got its 503 stops there instead of finishing in the background.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from ..errors import ClipzeroError
from ..machine import lower_priority, usable_cores

__all__ = ["LANE_PIXELS", "DecodeLane", "ServerBusy", "batches_within", "check_deadline", "decoded_pixels"]

#: Images that decode to more pixels than this (a 16-megapixel picture, about 0.5 s to decode here) are decoded
#: in the lane; smaller ones, the common case, never wait for it.
LANE_PIXELS = 16_000_000

T = TypeVar("T")

#: Files whose size cannot be read from their header (camera RAW decoded by rawpy, damaged headers) larger than
#: this many bytes are priced as a lane-sized image: never free.
_UNKNOWN_HEAVY_BYTES = 4 * 1024 * 1024


class ServerBusy(ClipzeroError):
    """The server's lane for large images is full: try again in a few seconds (HTTP 503 with Retry-After)."""

    retry_after_s = 5


class DeadlineExceeded(ClipzeroError):
    """A request that did not finish within the server's per-request time limit."""


def check_deadline(deadline: float | None, what: str = "the request") -> None:
    """Raise DeadlineExceeded once ``deadline`` (a ``time.monotonic()`` value) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(f"{what} passed this server's time limit (--request-timeout); its work was stopped")


def decoded_pixels(data: bytes, draft: tuple[int, int] | None = None) -> int:
    """How many pixels decoding ``data`` will produce, from its header alone (nothing is decoded).

    A JPEG is priced at the reduced scale its decoder will use for ``draft`` (the model's input size). A file
    whose header cannot be read is priced 0 when small (the pipeline reports why it is unreadable) and as a
    lane-sized image when large (a format only its own decoder sizes, such as camera RAW).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the decompression-bomb warning: the pixel limits are the policy
            with Image.open(io.BytesIO(data)) as image:
                if draft is not None and image.format == "JPEG":
                    image.draft("RGB", draft)  # sets the scale and the size it gives; decodes nothing
                return int(image.width) * int(image.height)
    except Exception:  # unreadable or not sized by Pillow: priced by its bytes
        return LANE_PIXELS + 1 if len(data) > _UNKNOWN_HEAVY_BYTES else 0


def batches_within(items: Iterable[T], size: int, budget: int, cost: Callable[[T], int]) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` whose costs add up to at most ``budget`` (one request's pixels); an
    item over the budget alone is a list of its own."""
    batch: list[T] = []
    spent = 0
    for item in items:
        price = cost(item)
        if batch and (len(batch) >= size or spent + price > budget):
            yield batch
            batch, spent = [], 0
        batch.append(item)
        spent += price
    if batch:
        yield batch


def default_slots() -> int:
    """One slot per two cores (at least one): large decodes never take every core from small requests."""
    return max(1, usable_cores() // 2)


class DecodeLane:
    """A few threads for heavy decodes and a bounded queue in front of them.

    Args:
        slots: heavy decodes that may run at once (the pool's threads).
        queue: decodes that may wait for a thread; one more is refused with :class:`ServerBusy`.
    """

    def __init__(self, slots: int | None = None, queue: int = 4) -> None:
        self.slots = max(1, slots or default_slots())
        self.queue = max(0, queue)
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="clipzero-lane", initializer=lower_priority)
        self._pending = 0  # submitted and not finished: running plus waiting
        self._running = 0
        self._lock = threading.Lock()
        self.refused = 0  # requests told the lane was full (shown by /v1/models)

    @property
    def waiting(self) -> int:
        return max(0, self._pending - self._running)

    def run(self, work: Callable[[], T], deadline: float | None) -> T:
        """``work()`` on one of the lane's threads; its result, or its exception.

        Raises:
            ServerBusy: every thread is busy and the queue is full.
            DeadlineExceeded: not done by ``deadline`` (not started by then: dropped).
        """
        with self._lock:
            if self._pending >= self.slots + self.queue:
                self.refused += 1
                raise ServerBusy(
                    "this server is busy decoding other large images; try again in a few seconds (smaller "
                    "images never wait for this)"
                )
            self._pending += 1

        def tracked() -> T:
            with self._lock:
                self._running += 1
            try:
                return work()
            finally:
                with self._lock:
                    self._running -= 1
                    self._pending -= 1

        future = self._pool.submit(tracked)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return future.result(timeout=left)
        except FutureTimeout as exc:
            if future.cancel():  # never started: it will not run, and no longer counts
                with self._lock:
                    self._pending -= 1
            raise DeadlineExceeded("a large image was still waiting to be decoded at this server's time limit "
                                   "(--request-timeout)") from exc  # fmt: skip

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
