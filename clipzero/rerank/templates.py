"""LLM prompt templates (``prompts/rerank/*.yaml``): loading, and rendering that user text cannot break.

A template holds ``system`` and ``user`` texts with ``{{name}}`` variables. Rendering replaces each variable once,
in a single pass over the template, so a value is never read again as template text: a label holding ``{{count}}``,
braces, quotes or newlines stays literal. Labels themselves are inserted as JSON strings. A variable the template
uses but the caller does not give fails loudly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TemplateError

__all__ = ["LLMTemplate", "list_llm_templates", "load_llm_template", "render"]

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def llm_template_path() -> list[Path]:
    """Folders searched for LLM templates: $CLIPZERO_PROMPTS_PATH/rerank, the package copy, the source checkout."""
    paths = [Path(p) / "rerank" for p in os.environ.get("CLIPZERO_PROMPTS_PATH", "").split(os.pathsep) if p]
    package = Path(__file__).resolve().parent.parent
    paths.append(package / "_prompts" / "rerank")
    paths.append(package.parent / "prompts" / "rerank")
    return paths


@dataclass(frozen=True)
class LLMTemplate:
    """A system and a user template, plus the fixed texts they refer to."""

    name: str
    system: str
    user: str
    language: str = "en"
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> set[str]:
        return set(_VARIABLE.findall(self.system)) | set(_VARIABLE.findall(self.user))

    def render(self, values: dict[str, str]) -> tuple[str, str]:
        """(system, user) with every variable filled."""
        return render(self.system, values, self.name), render(self.user, values, self.name)


def render(template: str, values: dict[str, str], where: str = "template") -> str:
    """Fill ``{{name}}`` variables in one pass; a missing value raises TemplateError."""
    missing = sorted(set(_VARIABLE.findall(template)) - set(values))
    if missing:
        raise TemplateError(f"{where}: no value for {', '.join('{{' + m + '}}' for m in missing)}")
    return _VARIABLE.sub(lambda m: str(values[m.group(1)]), template)


def list_llm_templates() -> list[str]:
    names: set[str] = set()
    for folder in llm_template_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def load_llm_template(name: str | os.PathLike[str]) -> LLMTemplate:
    """A template by name (``cot-en``, ``cot-zh``, ``describe-en``...) or from a YAML file.

    Raises:
        TemplateError: unknown name, unreadable file, or missing ``system``/``user``.
    """
    import yaml

    text = os.fspath(name)
    candidates = [Path(text)] if text.endswith((".yaml", ".yml")) else [f / f"{text}.yaml" for f in llm_template_path()]
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        known = ", ".join(list_llm_templates()) or "none found"
        raise TemplateError(f"LLM template {text!r} not found (known: {known})")
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"LLM template {source}: cannot read it: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("system"), str) or not isinstance(data.get("user"), str):
        raise TemplateError(f"LLM template {source}: needs 'system' and 'user' texts")
    extras = {k: v for k, v in data.items() if k not in ("name", "system", "user", "language", "description")}
    return LLMTemplate(
        name=str(data.get("name") or source.stem),
        system=data["system"],
        user=data["user"],
        language=str(data.get("language", "en")),
        description=str(data.get("description", "")),
        extras=extras,
    )
