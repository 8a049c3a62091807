"""open_clip, imported once and only as far as the model at hand needs.

``import open_clip`` also imports Hugging Face ``transformers`` (for CoCa generation and Hugging Face text towers)
and ``timm`` (for timm image towers): seconds of a first call that most models never use. When the model's config
says its towers and tokenizer are open_clip's own, open_clip is imported with those packages hidden, which it treats
as not installed; a later model in the same process that needs one gets open_clip's part for it imported again.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "ASSETS",
    "OPTIONAL",
    "arch_needs",
    "architectures",
    "folder_needs",
    "open_clip_module",
    "pretrained_cfg",
    "pretrained_tags",
]

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


def _open_clip_folders() -> list[Path]:
    """open_clip's package folder(s), found without importing it (an empty list when it is not installed)."""
    found = importlib.util.find_spec("open_clip")
    return [Path(p) for p in found.submodule_search_locations or []] if found is not None else []


def _config_folders() -> list[Path]:
    return [ASSETS / "configs"] + [folder / "model_configs" for folder in _open_clip_folders()]


def _imported() -> Any:
    """open_clip when this process has imported it already (then asking it is free), else None."""
    module = sys.modules.get("open_clip")
    return open_clip_module() if module is not None and hasattr(module, "list_models") else None


def architectures() -> list[str]:
    """open_clip's architecture names, clipzero's own included.

    Read from the config files while open_clip is not imported (importing it costs seconds, and a misspelt model
    name should fail in well under one); from open_clip itself once it is, as it then also knows configs added at
    run time.
    """
    open_clip = _imported()
    if open_clip is not None:
        return list(open_clip.list_models())
    names = set()
    for folder in _config_folders():
        for path in folder.glob("*.json"):
            config = _read(path)
            if isinstance(config, dict) and {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
                names.add(path.stem)
    return sorted(names)


def pretrained_tags(arch: str) -> list[str]:
    """The pretrained tags open_clip knows for ``arch`` (read from its source while it is not imported)."""
    open_clip = _imported()
    table = _pretrained_table() if open_clip is None else None
    if table is None:
        return list(open_clip_module().list_pretrained_tags_by_model(arch))
    return list(table.get(arch, {}))


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """Where open_clip finds the weights of ``arch:tag`` (``hf_hub``, ``url``, ``file``, ``quick_gelu``...); the
    literal settings only while open_clip is not imported, all of them once it is."""
    open_clip = _imported()
    table = _pretrained_table() if open_clip is None else None
    if table is None:
        return dict(open_clip_module().get_pretrained_cfg(arch, tag))
    return dict(table.get(arch, {}).get(tag, {}))


@functools.lru_cache(maxsize=1)
def _pretrained_table() -> dict[str, dict[str, dict[str, Any]]] | None:
    """open_clip's table of pretrained weights, ``{arch: {tag: literal settings}}``, read from the syntax of its
    ``pretrained.py`` without running it. None when the file is not laid out as expected (callers then import
    open_clip and ask it): this is a shortcut, never a second source of truth."""
    for folder in _open_clip_folders():
        try:
            tree = ast.parse((folder / "pretrained.py").read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        return _table_from(tree)
    return None


def _table_from(tree: ast.Module) -> dict[str, dict[str, dict[str, Any]]] | None:
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    table: ast.Dict | None = None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == "_PRETRAINED" and isinstance(node.value, ast.Dict):
            table = node.value
        else:
            tags = _tags_of(node.value)
            if tags is not None:
                entries[name] = tags
    if table is None or not table.keys:
        return None
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in zip(table.keys, table.values):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return None
        tags = entries.get(value.id) if isinstance(value, ast.Name) else _tags_of(value)
        if tags is None:
            return None
        result[key.value] = tags
        quick = {tag: cfg for tag, cfg in tags.items() if cfg.get("quick_gelu")}
        if quick:  # open_clip adds ARCH-quickgelu for the tags trained with QuickGELU
            result.setdefault(key.value + "-quickgelu", quick)
    return result


def _tags_of(value: ast.expr) -> dict[str, dict[str, Any]] | None:
    """``dict(tag=_pcfg(...), ...)`` or ``{"tag": _pcfg(...)}`` -> {tag: the call's literal keyword arguments}."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict" and not value.args:
        if any(k.arg is None for k in value.keywords):
            return None
        pairs = [(k.arg, k.value) for k in value.keywords]
    elif isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                             for k in value.keys):  # fmt: skip
        pairs = [(k.value, v) for k, v in zip(value.keys, value.values)]  # type: ignore[union-attr]
    else:
        return None
    tags: dict[str, dict[str, Any]] = {}
    for tag, call in pairs:
        if not isinstance(call, ast.Call):
            return None
        settings: dict[str, Any] = {}
        for index, arg in enumerate(call.args[:2]):  # _pcfg(url, hf_hub, **settings)
            if isinstance(arg, ast.Constant):
                settings[("url", "hf_hub")[index]] = arg.value
        for keyword in call.keywords:
            if keyword.arg is not None and isinstance(keyword.value, ast.Constant):
                settings[keyword.arg] = keyword.value.value
        tags[str(tag)] = settings
    return tags


def arch_needs(arch: str) -> set[str]:
    """The optional packages an open_clip architecture uses, from its config file, without importing open_clip."""
    for folder in _config_folders():
        if (folder / f"{arch}.json").is_file():
            return _config_needs(_read(folder / f"{arch}.json"))
    return set(OPTIONAL)


def folder_needs(folder: Path | None) -> set[str]:
    """The optional packages of a model folder in open_clip's layout (all of them when its config cannot be read,
    or for a hub model not fetched yet)."""
    config = _read(folder / _HUB_CONFIG) if folder is not None else None
    return _config_needs(config.get("model_cfg") if isinstance(config, dict) else None)
