"""Small JSON files of calibrated rules in ``$CLIPZERO_HOME`` (``rejection.json``, ``multilabel.json``): read whole,
written atomically, and never a reason to fail (a read-only home only costs computing a rule again)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["read_rules", "remembered", "write_rule"]

_Rule = TypeVar("_Rule")


def _path(name: str) -> Path:
    from .config import home

    return home() / name


def read_rules(name: str) -> dict[str, Any]:
    """The rules kept in ``$CLIPZERO_HOME/<name>`` by key (empty when there is no readable file)."""
    try:
        data = json.loads(_path(name).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_rule(name: str, key: str, rule: dict[str, Any]) -> None:
    """Keep ``rule`` under ``key`` in ``$CLIPZERO_HOME/<name>`` (written to a temporary file, then renamed)."""
    path = _path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = read_rules(name)
        data[key] = rule
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def remembered(name: str, key: str, memory: dict[str, Any], lock: threading.Lock, kind: Callable[..., _Rule],
               compute: Callable[[], _Rule]) -> _Rule:  # fmt: skip
    """The rule under ``key``: from ``memory``, else from ``$CLIPZERO_HOME/<name>``, else computed (once, under
    ``lock``) and kept in both. A stored rule ``kind`` cannot be built from (an older layout) is computed again."""
    with lock:
        found = memory.get(key)
        if found is None:
            stored = read_rules(name).get(key)
            try:
                found = kind(**stored) if isinstance(stored, dict) else None
            except TypeError:
                found = None
        if found is None:
            found = compute()
            write_rule(name, key, asdict(found))  # type: ignore[call-overload]
        memory[key] = found
        return found
