"""The public API: an explicit, sorted __all__ whose every name resolves, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import clipzero


def test_all_is_sorted_and_resolves() -> None:
    assert clipzero.__all__ == sorted(clipzero.__all__)
    for name in clipzero.__all__:
        assert getattr(clipzero, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, clipzero; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute() -> None:
    try:
        clipzero.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
