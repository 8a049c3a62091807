"""What models can be loaded here, and which are already cached (``clipzero models``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from . import hub
from .errors import ClipzeroError
from .languages import CHINESE_MODELS, reads_chinese
from .transformers_family import PREFIX, repo_is_cached

__all__ = ["ModelEntry", "list_models"]


@dataclass(frozen=True)
class ModelEntry:
    """One loadable model.

    Attributes:
        spec: what to pass as ``--model``.
        kind: ``registered``, ``pretrained``, ``hf-hub`` or ``transformers``.
        cached: True when it loads with no network (local files, or weights already cached).
        description: a short note (for models that read Chinese: the published figure and its source).
        chinese: its text tower reads Chinese (:mod:`clipzero.languages`).
    """

    spec: str
    kind: str
    cached: bool
    description: str = ""
    chinese: bool = False  # its text tower reads Chinese

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cached_hub_repos() -> list[str]:
    """open_clip repositories (those with open_clip_config.json) found in the Hugging Face cache."""
    root = hub.hub_cache_dir()
    if not root.is_dir():
        return []
    return [
        folder.name[len("models--") :].replace("--", "/")
        for folder in sorted(root.glob("models--*"))
        if any(folder.glob("snapshots/*/open_clip_config.json"))
    ]


def list_models(cached_only: bool = False) -> list[ModelEntry]:
    """Every model spec clipzero can load by name: registered names, open_clip pretrained pairs, cached hub repos.

    Args:
        cached_only: keep only the models that load without network.
    """
    import open_clip

    from .config import DEFAULT_MODEL
    from .models import ModelSpec, is_cached, list_registered_models, parse_spec

    entries = []
    for registered in list_registered_models():
        try:
            cached, note = is_cached(parse_spec(registered.name)), registered.description
        except ClipzeroError as exc:
            cached, note = False, f"broken: {exc}"
        entries.append(ModelEntry(registered.name, "registered", cached, note))
    for arch, tag in open_clip.list_pretrained():
        spec = f"{arch}:{tag}"
        cached = is_cached(ModelSpec(text=spec, kind="pretrained", arch=arch, tag=tag))
        entries.append(ModelEntry(spec, "pretrained", cached, "the default" if spec == DEFAULT_MODEL else ""))
    for repo in _cached_hub_repos():
        entries.append(ModelEntry(f"hf-hub:{repo}", "hf-hub", True, "in the Hugging Face cache"))
    known = {m.spec: m for m in CHINESE_MODELS}
    listed = {e.spec for e in entries}
    for model in CHINESE_MODELS:  # transformers models that read Chinese are not in open_clip's list
        if model.spec not in listed and model.spec.startswith(PREFIX):
            entries.append(ModelEntry(model.spec, "transformers", repo_is_cached(model.spec[len(PREFIX) :])))
    entries = [
        replace(e, chinese=True, description=f"{known[e.spec].figure} ({known[e.spec].source})")
        if e.spec in known
        else replace(e, chinese=reads_chinese(e.spec.partition(":")[0], e.spec))
        for e in entries
    ]
    return [e for e in entries if e.cached or not cached_only]
