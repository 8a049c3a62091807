"""open_clip, imported once and only as far as the model at hand needs.

``import open_clip`` also imports Hugging Face ``transformers`` (for CoCa generation and Hugging Face text towers)
and ``timm`` (for timm image towers): seconds of a first call that most models never use. When the model's config
says its towers and tokenizer are open_clip's own, open_clip is imported with those packages hidden, which it treats
as not installed; a later model in the same process that needs one gets open_clip's part for it imported again.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["ASSETS", "OPTIONAL", "arch_needs", "folder_needs", "open_clip_module"]

#: clipzero's packaged files: the bundled model and clipzero's own architecture configs.
ASSETS = Path(__file__).resolve().parent / "assets"
#: open_clip's optional packages, and its module that imports each (imported again when one is needed later).
OPTIONAL = {"transformers": "open_clip.hf_model", "timm": "open_clip.timm_model"}
_HUB_CONFIG = "open_clip_config.json"
_STATE: dict[str, Any] = {"configs": False, "hidden": set()}


def open_clip_module(needs: frozenset[str] | set[str] | None = None) -> Any:
    """open_clip, with clipzero's own architectures (assets/configs) added to its registry.

    Args:
        needs: which of :data:`OPTIONAL` the model at hand needs. With a set, open_clip (if not imported yet) is
            imported without the others, and any of them hidden earlier is brought back; None (listing, parsing)
            leaves things as they are.
    """
    if needs is not None and "open_clip" not in sys.modules:
        hide = [name for name in OPTIONAL if name not in needs and name not in sys.modules]
        for name in hide:
            sys.modules[name] = None  # type: ignore[assignment]  # open_clip's optional imports then fail fast
        try:
            import open_clip
        finally:
            for name in hide:
                del sys.modules[name]
        _STATE["hidden"] = set(hide)
    import open_clip

    for name in sorted(_STATE["hidden"] & set(needs or ())):
        importlib.reload(importlib.import_module(OPTIONAL[name]))  # its classes read these globals when they run
        _STATE["hidden"].discard(name)
    if not _STATE["configs"]:
        open_clip.add_model_config(ASSETS / "configs")
        _STATE["configs"] = True
    return open_clip


def _config_needs(model_cfg: Any) -> set[str]:
    """The optional packages a model config uses (all of them when it cannot be read: the safe answer)."""
    if not isinstance(model_cfg, dict):
        return set(OPTIONAL)
    text_cfg, vision_cfg = model_cfg.get("text_cfg"), model_cfg.get("vision_cfg")
    if not isinstance(text_cfg, dict) or not isinstance(vision_cfg, dict):
        return set(OPTIONAL)
    needs = set()
    if any(k.startswith("hf_") and v for k, v in text_cfg.items()):
        needs.add("transformers")
    if any(k.startswith("timm_") and v for k, v in vision_cfg.items()):
        needs.add("timm")
    return needs


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def arch_needs(arch: str) -> set[str]:
    """The optional packages an open_clip architecture uses, from its config file, without importing open_clip."""
    found = importlib.util.find_spec("open_clip")
    folders = [ASSETS / "configs"]
    if found is not None and found.submodule_search_locations:
        folders += [Path(p) / "model_configs" for p in found.submodule_search_locations]
    for folder in folders:
        if (folder / f"{arch}.json").is_file():
            return _config_needs(_read(folder / f"{arch}.json"))
    return set(OPTIONAL)


def folder_needs(folder: Path | None) -> set[str]:
    """The optional packages of a model folder in open_clip's layout (all of them when its config cannot be read,
    or for a hub model not fetched yet)."""
    config = _read(folder / _HUB_CONFIG) if folder is not None else None
    return _config_needs(config.get("model_cfg") if isinstance(config, dict) else None)
