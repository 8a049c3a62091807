"""CLIP-family models from the transformers library, behind the same :class:`~clipzero.encoder.Encoder`.

``--model hf-transformers:ORG/NAME`` (a hub repository) or a local folder written by ``save_pretrained`` (with or
without the prefix) loads ``CLIPModel``, ``ChineseCLIPModel``, ``SiglipModel``, ``Siglip2Model`` (NaFlex: each image
as patches at its own aspect ratio) or ``AltCLIPModel`` with the
repository's own image processor and tokenizer. The same rules hold as for open_clip models: the hub cache first, a
fast clear error offline, weights from safetensors only (no pickles), every precision, the label cache and stores
keyed by the model's id (``hf-transformers:ORG/NAME@<revision>``, or the weights' hash for a folder).

Scores follow the family: CLIP, Chinese-CLIP and AltCLIP take a softmax over ``logit_scale x cosine``; SigLIP and
SigLIP 2 score each label on its own with a sigmoid of ``logit_scale x cosine + logit_bias``.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import hub
from .errors import ModelNotFoundError

__all__ = [
    "FAMILIES",
    "PREFIX",
    "folder_id",
    "is_transformers_folder",
    "model_type",
    "repo_is_cached",
    "snapshot",
    "split_spec",
]

PREFIX = "hf-transformers:"

#: ``model_type`` in config.json -> the transformers class that loads it.
FAMILIES = {
    "clip": "CLIPModel",
    "chinese_clip": "ChineseCLIPModel",
    "siglip": "SiglipModel",
    "siglip2": "Siglip2Model",
    "altclip": "AltCLIPModel",
}

_WEIGHTS = ["model.safetensors", "model.safetensors.index.json"]
_EXTRAS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "vocab*", "merges.txt", "spiece.model"]


def is_transformers_folder(path: Path) -> bool:
    """A folder that ``save_pretrained`` wrote for one of :data:`FAMILIES`."""
    return path.is_dir() and model_type(path) in FAMILIES


def model_type(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None


def split_spec(text: str) -> tuple[Path | None, str | None]:
    """(folder, None) or (None, repository) for ``hf-transformers:...``.

    Raises:
        ModelNotFoundError: neither an existing folder nor ORG/NAME.
    """
    rest = text[len(PREFIX) :]
    folder = Path(rest).expanduser()
    if folder.is_dir():
        return folder, None
    if rest.strip("/").count("/") != 1 or rest.startswith((".", "~", "/")):
        raise ModelNotFoundError(f"model spec {text!r}: expected {PREFIX}ORG/NAME or {PREFIX}/path/to/folder")
    return None, rest.strip("/")


def repo_is_cached(repo: str) -> bool:
    """A hub repository's config and weights are in the local cache."""
    return all(hub.cached_hub_file(repo, files) for files in (["config.json"], _WEIGHTS))


def snapshot(spec: str, repo: str) -> Path:
    """The cached folder of a hub repository, downloaded first when it is not cached and the hub can be reached.

    Raises:
        ModelUnavailableError: not cached, and offline (the error says how to get it).
    """
    config = hub.require_hub_file(spec, repo, ["config.json"])
    weights = hub.require_hub_file(spec, repo, _WEIGHTS)
    folder = config.parent
    if weights.name.endswith(".index.json") or not any(folder.glob("tokenizer*")) or not any(
        folder.glob("preprocessor_config.json")
    ):  # fmt: skip
        hub.fetch_hub_extras(repo, folder, _EXTRAS)
    return folder


def folder_id(folder: Path) -> str:
    """A local folder's id: its family and the hash of its config and weights (so two versions never mix)."""
    digest = hub.files_digest(folder / "config.json", *sorted(folder.glob("*.safetensors")))
    return f"{PREFIX}{model_type(folder)}@sha256:{digest}"
