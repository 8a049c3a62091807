"""Optional dependencies: which extra brings which module, checked before any work starts.

The base install labels, tags and indexes images; the rest comes as extras (``pip install 'clipzero[web]'``).
A door calls :func:`require` for every feature a request uses before it loads a model or reads an image, so a
missing extra is one clear error up front instead of a traceback after the work is done.
"""

from __future__ import annotations

import importlib.util
import sys

from .errors import MissingExtraError

__all__ = ["EXTRAS", "installed", "missing", "require"]

#: extra -> the modules it brings (the ones clipzero imports).
EXTRAS: dict[str, tuple[str, ...]] = {
    "web": ("gradio", "fastapi", "uvicorn", "multipart"),
    "llm": ("httpx",),
    "parquet": ("pyarrow",),
    "ray": ("ray", "pyarrow"),
    "finetune": ("peft", "datasets"),
    "mcp": ("mcp", "uvicorn"),
    "formats": ("pillow_heif", "rawpy"),
    "video": ("av",),
    "dedup": ("cv2",),
    "xmp": ("pyexiv2",),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    if module in sys.modules:  # None there means "known to be missing" (and is how tests simulate it)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed here (none imported by the check)."""
    return [m for m in EXTRAS[extra] if not installed(m)]


def require(extra: str, feature: str) -> None:
    """Raise a :class:`MissingExtraError` naming the fix when ``extra`` is not fully installed.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what needs it, for the message (``"--out results.parquet"``).
    """
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{feature} needs {', '.join(absent)}, which is not installed: pip install 'clipzero[{extra}]'"
        )
