"""No client slows the others: every request's image work is priced before it starts, and heavy work waits in
one bounded lane.

* **Priced before decoding.** :func:`decoded_pixels` reads only an image's header (a JPEG's at the reduced scale
  the model's draft size allows) and says how many pixels decoding it will produce. A request's images, repeats of
  one upload included, are added up and a request over ``max_request_pixels`` is refused (413) before any of it
  is decoded.
* **Heavy work in one lane.** Images of more than :data:`LANE_PIXELS` decoded pixels are decoded inside the
  :class:`DecodeLane`: a few slots (one per two cores) and a short, bounded queue. A request that finds the
  queue full is told at once that the server is busy (503, ``Retry-After``) instead of holding a worker thread
  while it waits, so a flood of large images cannot take the threads that small requests need. A wait ends at
  the request's deadline.
* **Work past the deadline is abandoned.** :func:`check_deadline` is called between images; a request whose
  client already got its 503 stops there instead of finishing in the background.
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ClipzeroError

__all__ = ["LANE_PIXELS", "DecodeLane", "ServerBusy", "check_deadline", "decoded_pixels"]

#: Images that decode to more pixels than this (a 16-megapixel picture, about 0.5 s to decode here) are decoded
#: in the lane; smaller ones, the common case, never wait for it.
LANE_PIXELS = 16_000_000

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


def default_slots() -> int:
    """One slot per two cores (at least one): large decodes never take every core from small requests."""
    return max(1, (os.cpu_count() or 2) // 2)


class DecodeLane:
    """A few slots for heavy decodes and a bounded queue in front of them.

    Args:
        slots: heavy decodes that may run at once.
        queue: requests that may wait for a slot; one more is refused with :class:`ServerBusy`.
    """

    def __init__(self, slots: int | None = None, queue: int = 4) -> None:
        self.slots = max(1, slots or default_slots())
        self.queue = max(0, queue)
        self._free = self.slots
        self._waiting = 0
        self._changed = threading.Condition()
        self.refused = 0  # requests told the lane was full (shown by /v1/models)

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextmanager
    def slot(self, deadline: float | None) -> Iterator[None]:
        """Hold one slot for the ``with`` body.

        Raises:
            ServerBusy: every slot is taken and the queue is full.
            DeadlineExceeded: no slot came free before ``deadline``.
        """
        with self._changed:
            if self._free == 0:
                if self._waiting >= self.queue:
                    self.refused += 1
                    raise ServerBusy(
                        "this server is busy decoding other large images; try again in a few seconds (smaller "
                        "images never wait for this)"
                    )
                self._waiting += 1
                try:
                    while self._free == 0:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise DeadlineExceeded(
                                "a large image waited for the decoding lane until this server's time limit "
                                "(--request-timeout)"
                            )
                        self._changed.wait(left)
                finally:
                    self._waiting -= 1
            self._free -= 1
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify()
