"""Prompt template sets: validated data, rendering, and the built-in sets.

A template set turns a label into the prompts its text embedding is averaged over. It holds templates with a
``{label}`` slot (``"a photo of a {label}."``) and, optionally, per-label prompts (complete descriptions such as
``"a tabby cat, a small striped pet"``). Sets are data files:

* ``.txt``: one template per line; blank lines and lines starting with ``#`` are ignored.
* ``.json`` / ``.yaml``: a list of templates; or a mapping ``label -> [descriptions]``; or a structured set
  ``{"name": ..., "language": ..., "description": ..., "templates": [...], "labels": {label: [...]}}``.

Built-in sets are looked up by name on a search path: ``$CLIPZERO_PROMPTS_PATH`` (``os.pathsep``-separated
folders), the copy inside the installed package, and ``prompts/zeroshot`` of a source checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import TemplateError

__all__ = [
    "TemplateSet",
    "guess_language",
    "list_template_sets",
    "load_templates",
    "normalize_label",
    "template_search_path",
]

_SUFFIXES = (".txt", ".yaml", ".yml", ".json")
_STRUCTURED_KEYS = {"name", "language", "description", "templates", "labels"}


def guess_language(texts: Iterable[str]) -> str:
    """``zh`` when any of ``texts`` holds Chinese characters, else ``en`` (the two languages clipzero's built-in
    templates speak)."""
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for text in texts for ch in text) else "en"


def normalize_label(label: str) -> str:
    """The form of a label used for cache keys and lookups (NFC, trimmed, case-folded); never shown to users."""
    return unicodedata.normalize("NFC", label).strip().casefold()


def _check_template(template: str, where: str, *, need_label: bool) -> str:
    if not isinstance(template, str) or not template.strip():
        raise TemplateError(f"{where}: a template must be a non-empty string, got {template!r}")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise TemplateError(
            f"{where}: malformed template {template!r} ({exc}); write a literal brace as {{{{ or }}}}"
        ) from exc
    for name, spec, conv in fields:
        if name != "label":
            raise TemplateError(
                f"{where}: template {template!r} has an unknown slot {{{name}}}; the only slot is {{label}}"
            )
        if spec or conv:
            raise TemplateError(
                f"{where}: template {template!r}: the {{label}} slot takes no format spec or conversion"
            )
    if need_label and not fields:
        raise TemplateError(f"{where}: template {template!r} has no {{label}} slot")
    return template


@dataclass(frozen=True)
class TemplateSet:
    """A validated set of prompt templates.

    Attributes:
        name: the set's name (a built-in name, or the file it came from).
        templates: templates with a ``{label}`` slot, applied to every label.
        per_label: label -> prompts written for that label (used in addition to ``templates``).
        language: an optional language code such as ``en`` or ``zh``.
        description: free text.
    """

    name: str
    templates: tuple[str, ...] = ()
    per_label: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    language: str | None = None
    description: str = ""
    follows_labels: bool = field(default=False, compare=False)  # the auto set: Chinese labels take ensemble-zh
    _lookup: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        for i, template in enumerate(self.templates):
            _check_template(template, f"template set {self.name!r}, template {i + 1}", need_label=True)
        for label, prompts in self.per_label.items():
            if not isinstance(label, str) or not label.strip():
                raise TemplateError(
                    f"template set {self.name!r}: per-label keys must be non-empty strings, got {label!r}"
                )
            if isinstance(prompts, str) or not prompts:
                raise TemplateError(f"template set {self.name!r}: label {label!r} needs a non-empty list of prompts")
            for prompt in prompts:
                _check_template(prompt, f"template set {self.name!r}, label {label!r}", need_label=False)
        if not self.templates and not self.per_label:
            raise TemplateError(f"template set {self.name!r} is empty: give at least one template")
        object.__setattr__(self, "_lookup", {normalize_label(k): v for k, v in self.per_label.items()})

    @property
    def language_or_guess(self) -> str:
        """The set's declared language, else the one its prompts are written in (:func:`guess_language`)."""
        return self.language or guess_language([*self.templates, *(p for ps in self.per_label.values() for p in ps)])

    @property
    def content_hash(self) -> str:
        """A hash of the prompts themselves (not the name): equal content, equal cached embeddings."""
        payload = json.dumps(
            {"templates": list(self.templates), "labels": {k: list(v) for k, v in sorted(self.per_label.items())}},
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def prompts_for(self, label: str) -> list[str]:
        """The prompts for one label: every template filled in, then the label's own prompts.

        Raises:
            TemplateError: the set has only per-label prompts and none for this label.
        """
        own: tuple[str, ...] = self._lookup.get(normalize_label(label), ())
        prompts = [t.format(label=label) for t in self.templates]
        prompts += [p.format(label=label) for p in own]
        if not prompts:
            raise TemplateError(
                f"template set {self.name!r} has no prompts for label {label!r}; add them, or add templates with "
                "a {label} slot to the set"
            )
        return prompts


def template_search_path() -> list[Path]:
    """The folders searched for built-in template sets, in order."""
    paths = [Path(p) for p in os.environ.get("CLIPZERO_PROMPTS_PATH", "").split(os.pathsep) if p]
    package = Path(__file__).resolve().parent
    paths.append(package / "_prompts" / "zeroshot")  # installed wheel
    paths.append(package.parent / "prompts" / "zeroshot")  # source checkout or editable install
    return paths


def _openai_set(attribute: str, name: str, description: str) -> Callable[[], TemplateSet]:
    def build() -> TemplateSet:
        from open_clip import zero_shot_metadata

        # open_clip stores these as callables c -> prompt; render them with a slot to get plain templates.
        templates = tuple(fn("{label}") for fn in getattr(zero_shot_metadata, attribute))
        return TemplateSet(name=name, templates=templates, language="en", description=description)

    return build


#: Sets built in code rather than files (read from open_clip at run time).
_CODE_SETS: dict[str, Callable[[], TemplateSet]] = {
    "openai-imagenet": _openai_set(
        "OPENAI_IMAGENET_TEMPLATES",
        "openai-imagenet",
        "the 80 ImageNet templates of the CLIP paper, read from open_clip",
    ),
    "simple-imagenet": _openai_set(
        "SIMPLE_IMAGENET_TEMPLATES", "simple-imagenet", "the 18-template short ImageNet set, read from open_clip"
    ),
}


def _find_builtin(name: str) -> Path | None:
    for folder in template_search_path():
        for suffix in _SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def list_template_sets() -> list[str]:
    """Names of the built-in template sets, sorted (``auto`` among them: the default)."""
    names = set(_CODE_SETS) | {"auto"}
    for folder in template_search_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.suffix in _SUFFIXES)
    return sorted(names)


def load_templates(spec: str | os.PathLike[str] | TemplateSet | Iterable[str]) -> TemplateSet:
    """Load a template set by built-in name or from a file, or validate templates given in code.

    Args:
        spec: a built-in name (``photo``, ``ensemble-en``, ``ensemble-zh``, ``openai-imagenet``, ...), ``auto``
            (``ensemble-en``, with Chinese labels taking ``ensemble-zh``), a path to a ``.txt``, ``.json`` or
            ``.yaml`` file, a :class:`TemplateSet`, or a list of template strings.

    Returns:
        The validated set.

    Raises:
        TemplateError: unknown name, unreadable or malformed file, a template without ``{label}`` or with
            unknown slots.

    Example:
        >>> load_templates("photo").prompts_for("cat")
        ['a photo of a cat.']
    """
    if isinstance(spec, TemplateSet):
        return spec
    if spec == "auto":  # the default: ensemble-en, and each Chinese label its ensemble-zh (clipzero.languages)
        return replace(load_templates("ensemble-en"), name="auto", follows_labels=True)
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        path = Path(text).expanduser()
        if path.suffix in _SUFFIXES and (path.is_file() or os.sep in text or "/" in text):
            return _load_file(path, name=text)
        if text in _CODE_SETS:
            return _CODE_SETS[text]()
        found = _find_builtin(text)
        if found is not None:
            return _load_file(found, name=text)
        raise TemplateError(
            f"unknown template set {text!r}: not a file and not one of {', '.join(list_template_sets())}"
        )
    templates = list(spec)
    if not all(isinstance(t, str) for t in templates):
        raise TemplateError("templates given in code must be strings")
    return TemplateSet(name="custom", templates=tuple(templates))


def _load_file(path: Path, name: str) -> TemplateSet:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TemplateError(f"template file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template file {path}: {exc}") from exc
    if path.suffix == ".txt":
        lines = [line.strip() for line in text.splitlines()]
        templates = []
        for number, line in enumerate(lines, 1):
            if line and not line.startswith("#"):
                templates.append(_check_template(line, f"{path}, line {number}", need_label=True))
        if not templates:
            raise TemplateError(f"template file {path} holds no templates")
        return TemplateSet(name=name, templates=tuple(templates))
    data = _parse_structured(path, text)
    return _from_data(data, name=name, where=str(path))


def _parse_structured(path: Path, text: str) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise TemplateError(f"template file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise TemplateError(f"{where}: expected a list of strings, got {type(value).__name__}")
    if not all(isinstance(v, str) for v in value):
        raise TemplateError(f"{where}: every entry must be a string")
    return tuple(value)


def _from_data(data: Any, name: str, where: str) -> TemplateSet:
    if isinstance(data, list):
        return TemplateSet(name=name, templates=_str_list(data, where))
    if not isinstance(data, dict) or not data:
        raise TemplateError(f"{where}: expected a list of templates or a mapping, got {type(data).__name__}")
    if _STRUCTURED_KEYS & set(data):
        unknown = sorted(set(data) - _STRUCTURED_KEYS)
        if unknown:
            raise TemplateError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_STRUCTURED_KEYS))}"
            )
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise TemplateError(f"{where}: 'labels' must map each label to a list of prompts")
        return TemplateSet(
            name=str(data.get("name") or name),
            templates=_str_list(data.get("templates") or [], f"{where}: templates"),
            per_label={str(k): _str_list(v, f"{where}: label {k!r}") for k, v in labels.items()},
            language=data.get("language"),
            description=str(data.get("description") or ""),
        )
    return TemplateSet(name=name, per_label={str(k): _str_list(v, f"{where}: label {k!r}") for k, v in data.items()})
