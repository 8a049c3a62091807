"""Model specs without loading anything: parsing one (:func:`parse_spec`), the registry of clipzero's own model
names, and whether a model's weights are here or can be fetched now (:func:`check_available`).

Nothing here imports torch or open_clip (open_clip's architectures and pretrained tags are read from its files,
:mod:`clipzero.backend`), so a misspelt or absent model fails in a fraction of a second, at every door, before any
model loads. :mod:`clipzero.models` loads what a spec names.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import hub
from .backend import architectures, pretrained_cfg, pretrained_tags
from .config import load_settings
from .errors import ClipzeroError, ModelLoadError, ModelNotFoundError
from .transformers_family import PREFIX, is_transformers_folder, repo_is_cached, split_spec

__all__ = [
    "HUB_CONFIG",
    "WEIGHT_SUFFIXES",
    "ModelSpec",
    "RegisteredModel",
    "check_available",
    "is_cached",
    "list_registered_models",
    "parse_spec",
    "register_model",
]

#: Files that hold weights.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".npz")
#: The config file of a model folder in open_clip's layout.
HUB_CONFIG = "open_clip_config.json"


@dataclass(frozen=True)
class RegisteredModel:
    """A model name clipzero knows: ``target`` is a spec (usually a local directory) or a callable returning one.

    The registered name itself is the model's id, so embeddings cached under it stay valid wherever it is installed.
    """

    name: str
    target: str | Callable[[], str]
    description: str = ""

    def resolve(self) -> str:
        return self.target() if callable(self.target) else self.target


_REGISTRY: dict[str, RegisteredModel] = {}
_ASSETS = Path(__file__).resolve().parent / "assets"  # also in .backend


def register_model(name: str, target: str | Callable[[], str], description: str = "") -> None:
    """Register a model name (for example a bundled model, or a team's fine-tuned checkpoint).

    Args:
        name: the name users pass as a spec; it must not contain ``:`` or a path separator.
        target: the spec it stands for, or a callable returning it (resolved at load time).
        description: one line for ``clipzero models``.
    """
    if not name or ":" in name or "/" in name or os.sep in name:
        raise ClipzeroError(f"cannot register model name {name!r}: it must be non-empty without ':' or '/'")
    _REGISTRY[name] = RegisteredModel(name, target, description)


register_model(
    "clipzero-shapes",
    str(_ASSETS / "clipzero-shapes"),
    "bundled with clipzero: a small CLIP of the shapes world (English and Chinese); loads offline",
)


def list_registered_models() -> list[RegisteredModel]:
    """clipzero's registered names and the user's ``[models]`` aliases, sorted by name."""
    models = dict(_REGISTRY)
    for name, spec in load_settings().models.items():
        models.setdefault(name, RegisteredModel(name, spec, "from the config file"))
    return [models[name] for name in sorted(models)]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        text: the spec as given.
        kind: ``pretrained``, ``hf-hub``, ``local-dir``, ``local-file`` or ``transformers``.
        arch: the open_clip architecture (pretrained, local-file).
        tag: the pretrained tag (pretrained).
        repo: the hub repository (hf-hub).
        path: the local directory or file (local-dir, local-file).
        name: the registered name it came through, if any (then it is also the model's id).
    """

    text: str
    kind: str
    arch: str | None = None
    tag: str | None = None
    repo: str | None = None
    path: Path | None = None
    name: str | None = None


def _known_arch(arch: str) -> str:
    models = architectures()
    if arch in models:
        return arch
    close = difflib.get_close_matches(arch, models, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `clipzero models` lists them"
    raise ModelNotFoundError(f"unknown open_clip architecture {arch!r}{hint}")


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or os.sep in text or text.endswith(WEIGHT_SUFFIXES)


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string (see the module docs) without loading anything.

    Raises:
        ModelNotFoundError: the spec names no known architecture, tag, name, file or directory.
    """
    text = spec.strip()
    if not text:
        raise ModelNotFoundError("empty model spec")
    registered = {m.name: m for m in list_registered_models()}
    if text in registered:
        target = registered[text].resolve()
        inner = parse_spec(target)
        return ModelSpec(
            text=text, kind=inner.kind, arch=inner.arch, tag=inner.tag, repo=inner.repo, path=inner.path, name=text
        )
    if text.startswith("hf-hub:"):
        repo = text[len("hf-hub:") :].strip("/")
        if repo.count("/") != 1:
            raise ModelNotFoundError(f"model spec {spec!r}: expected hf-hub:ORG/REPO")
        return ModelSpec(text=text, kind="hf-hub", repo=repo)
    if text.startswith(PREFIX):  # a transformers CLIP-family model: a hub repository or a save_pretrained folder
        folder, name = split_spec(text)
        return ModelSpec(text=text, kind="transformers", path=folder, repo=name)
    if text.startswith("local-dir:"):
        text = text[len("local-dir:") :]
    path = Path(text).expanduser()
    if path.is_dir() and is_transformers_folder(path) and not (path / HUB_CONFIG).is_file():
        return ModelSpec(text=spec, kind="transformers", path=path)
    if path.is_dir():
        if not (path / HUB_CONFIG).is_file():
            raise ModelNotFoundError(f"model directory {path} has no {HUB_CONFIG} (open_clip's config format)")
        return ModelSpec(text=spec, kind="local-dir", path=path)
    if path.is_file():
        return ModelSpec(text=spec, kind="local-file", arch=_arch_for_file(path), path=path)
    arch, sep, rest = text.partition(":")
    if sep and rest:
        if _looks_like_path(rest):
            weights = Path(rest).expanduser()
            if not weights.is_file():
                raise ModelNotFoundError(f"model spec {spec!r}: weights file {weights} not found")
            return ModelSpec(text=spec, kind="local-file", arch=_known_arch(arch), path=weights)
        arch = _known_arch(arch)
        tags = pretrained_tags(arch)
        if rest not in tags:
            raise ModelNotFoundError(
                f"{arch} has no pretrained tag {rest!r}; its tags: {', '.join(tags) or 'none (pass local weights)'}"
            )
        return ModelSpec(text=spec, kind="pretrained", arch=arch, tag=rest)
    if _looks_like_path(text):
        raise ModelNotFoundError(f"model path {text} does not exist")
    known = architectures()
    if text in known:
        tags = pretrained_tags(text)
        raise ModelNotFoundError(
            f"{text!r} is an architecture without weights: say which, e.g. {text}:{tags[0] if tags else 'PATH'}"
            + (f" (tags: {', '.join(tags)})" if tags else "")
        )
    names = list(registered) + known
    close = difflib.get_close_matches(text, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown model {spec!r}: not a registered name, ARCH:TAG pair, hf-hub:ORG/REPO, file or directory{hint}"
    )


def _arch_for_file(path: Path) -> str:
    """A bare weights file names its architecture in safetensors metadata (``arch``) or a sibling config."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                arch = (handle.metadata() or {}).get("arch")
        except Exception as exc:
            raise ModelLoadError(f"{path} is not a readable safetensors file: {exc}") from exc
        if arch:
            return _known_arch(arch)
    raise ModelNotFoundError(
        f"cannot tell the architecture of {path}: pass it as ARCH:{path} (for example ViT-B-32:{path})"
    )


def is_cached(parsed: ModelSpec) -> bool:
    """True when the model loads with no network: local files, or weights already in a local cache."""
    if parsed.kind in ("local-dir", "local-file") or parsed.kind == "transformers":
        return parsed.path is not None or repo_is_cached(parsed.repo or "")
    if parsed.kind == "hf-hub":
        assert parsed.repo
        return all(hub.cached_hub_file(parsed.repo, files) for files in ([HUB_CONFIG], list(hub.HUB_WEIGHTS)))
    cfg = pretrained_cfg(parsed.arch or "", parsed.tag or "")
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    if cfg.get("hf_hub"):
        return hub.cached_hub_file(*hub.weight_candidates(cfg["hf_hub"])) is not None
    return bool(cfg.get("url")) and (hub.url_cache_dir() / os.path.basename(cfg["url"])).is_file()


def check_available(parsed: ModelSpec) -> None:
    """Fail now, before torch or open_clip is imported, when the weights are not here and cannot be fetched.

    Raises:
        ModelUnavailableError: not cached, and offline (the same error loading would give, seconds sooner).
    """
    if is_cached(parsed):
        return
    if parsed.kind == "pretrained":
        cfg = pretrained_cfg(parsed.arch or "", parsed.tag or "")
        if cfg.get("hf_hub"):
            hub.require_hub(parsed.text, *hub.weight_candidates(cfg["hf_hub"]))
        elif cfg.get("url"):
            hub.require_url(parsed.text, cfg["url"])
    elif parsed.kind == "hf-hub" and parsed.repo:
        hub.require_hub(parsed.text, parsed.repo, [HUB_CONFIG])
    elif parsed.kind == "transformers" and parsed.repo:
        hub.require_hub(parsed.text, parsed.repo, ["config.json"])
