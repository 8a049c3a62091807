"""Bounds a request body must meet before anything parses it, checked on its bytes at C speed.

Parsing is work a client can make large: a 29 MB body of millions of tiny strings costs seconds and gigabytes to
turn into objects before any per-field limit can refuse it, and JSON nested ten thousand deep overflows a
recursive parser. :func:`screen_json` refuses both from the raw bytes, so every JSON route (the API's and the web
UI's) answers 400 or 422 without parsing.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["MAX_DEPTH", "BodyRefused", "screen_json"]

#: Deepest nesting of arrays and objects accepted; clipzero's own requests are at most 6 deep.
MAX_DEPTH = 32

# A JSON string, escapes included: removed before nesting is measured (a "[" inside a label is not nesting).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


class BodyRefused(Exception):
    """A body refused before parsing: ``status`` (400 or 422), ``kind`` and ``message`` for the error reply."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def screen_json(body: bytes, *, max_strings: int, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a body that holds more strings than any request needs, or nests deeper than ``max_depth``.

    Args:
        body: the raw body (JSON or not: a body that is not JSON passes, its parser says why).
        max_strings: the most JSON strings (keys included) a request may hold.

    Raises:
        BodyRefused: 422 ``TooManyItems`` or 400 ``NestedTooDeep``.
    """
    strings = (body.count(b'"') - body.count(b'\\"')) // 2  # escaped quotes are inside strings, not around them
    if strings > max_strings:
        raise BodyRefused(422, "TooManyItems", f"the request body holds about {strings:,} strings, more than any "
                          f"request to this server may ({max_strings:,}): send fewer images, labels or texts")
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return  # cannot nest deeper than it has brackets: the common case ends here
    structure = np.frombuffer(_STRING.sub(b"", body), np.uint8)
    step = (np.isin(structure, (0x5B, 0x7B)).astype(np.int32)  # [ {
            - np.isin(structure, (0x5D, 0x7D)).astype(np.int32))  # ] }  # fmt: skip
    depth = int(np.cumsum(step).max()) if step.size else 0
    if depth > max_depth:
        raise BodyRefused(400, "NestedTooDeep", f"the request body nests {depth:,} levels deep; this server "
                          f"accepts JSON at most {max_depth} levels deep")  # fmt: skip
