"""Zero-shot classifiers by label set, for processes that serve many requests (the HTTP service, the agent tools).

A label set nobody asked for before is encoded by the first request that needs it, outside the lock every other
request takes; a second request for the same set waits for that one encode instead of doing its own; the most
recently used sets are kept (their label embeddings also stay in the label caches).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

from .access import client_templates

__all__ = ["ClassifierCache"]


class ClassifierCache:
    """Zero-shot classifiers of one model, by (labels, template set).

    Args:
        encoder: the model.
        default_templates: the template set for requests that name none.
        size: how many label sets to keep.
        text_slot: held while labels no cache holds are encoded (new sets take turns).
        calibration: applied to every classifier (:class:`~clipzero.calibration.Calibration`).
    """

    def __init__(self, encoder: Any, default_templates: Any, *, size: int = 64,
                 text_slot: AbstractContextManager[Any] | None = None, calibration: Any = None) -> None:  # fmt: skip
        self.encoder = encoder
        self.default_templates = default_templates
        self.size = size
        self.text_slot = text_slot if text_slot is not None else threading.Semaphore(1)
        self.calibration = calibration
        self._built: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._building: dict[tuple[Any, ...], Future[Any]] = {}
        self._lock = threading.Lock()  # the tables only; never held while encoding

    def get(self, labels: Sequence[str], templates: Any = None, timeout: float | None = None) -> Any:
        """The classifier for ``labels`` with a client's ``templates`` (a built-in name or inline templates, never a
        file; None: the default set).

        Raises:
            TemplateError: templates that are neither a built-in name nor ``{label}`` templates.
            concurrent.futures.TimeoutError: another request was still encoding this set after ``timeout`` seconds.
        """
        from .zeroshot import ZeroShotClassifier

        chosen = client_templates(templates) or self.default_templates
        key = (tuple(labels), chosen if isinstance(chosen, (str, tuple)) else chosen.content_hash)
        with self._lock:
            found = self._built.get(key)
            if found is not None:
                self._built.move_to_end(key)
                return found
            pending = self._building.get(key)
            owner = pending is None
            if pending is None:
                pending = self._building[key] = Future()
        if not owner:
            return pending.result(timeout=timeout)
        try:
            built = ZeroShotClassifier(self.encoder, labels, templates=chosen, text_slot=self.text_slot,
                                       calibration=self.calibration)  # fmt: skip
        except BaseException as exc:
            with self._lock:
                self._building.pop(key, None)
            pending.set_exception(exc)
            raise
        with self._lock:
            self._built[key] = built
            while len(self._built) > self.size:
                self._built.popitem(last=False)
            self._building.pop(key, None)
        pending.set_result(built)
        return built
