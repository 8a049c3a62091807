"""Label descriptions written by an LLM, in the style of CuPL: a per-label prompt file zero-shot can use.

For each label the LLM is asked what it looks like; its descriptions become that label's own prompts in a template
set file (JSON), next to a plain template, so every label keeps a prompt even when the LLM fails on it. The file
works with ``--templates FILE`` like any set, and the re-ranker shows the descriptions to the LLM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ClipzeroError
from .client import ChatClient
from .reranker import json_objects
from .templates import load_llm_template

__all__ = ["describe_labels", "read_descriptions", "write_description_set"]


def _parse(text: str) -> list[str]:
    for found in reversed(json_objects(text)):
        items = found.get("descriptions")
        if isinstance(items, list):
            clean = [" ".join(str(i).split()) for i in items if isinstance(i, str) and i.strip()]
            if clean:
                return clean
    raise ValueError("the reply holds no JSON object with a non-empty 'descriptions' list")


def describe_labels(
    client: ChatClient,
    labels: Sequence[str],
    *,
    template: str = "describe-en",
    count: int = 5,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Ask the LLM to describe each label.

    Returns:
        (label -> descriptions, label -> why it has none) ; every label is in exactly one of the two.
    """
    chosen = load_llm_template(template)

    def one(label: str) -> tuple[str, list[str] | None, str]:
        system, user = chosen.render({"label": json.dumps(label, ensure_ascii=False), "count": str(count)})
        try:
            reply = client.chat([{"role": "system", "content": system}, {"role": "user", "content": user}])
            return label, _parse(reply.text)[:count], ""
        except (ClipzeroError, ValueError) as exc:
            return label, None, str(exc)
        finally:
            if progress:
                progress(1)

    described: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for label, items, reason in pool.map(one, labels):
            if items:
                described[label] = items
            else:
                failed[label] = reason
    return described, failed


def write_description_set(
    path: str | os.PathLike[str], described: dict[str, list[str]], *, language: str = "en", model: str = ""
) -> Path:
    """Write a template set file: a plain template for every label plus each label's own descriptions."""
    base = "一张{label}的照片。" if language == "zh" else "a photo of a {label}."
    data = {
        "name": Path(path).stem,
        "language": language,
        "description": f"label descriptions written by {model or 'an LLM'} (clipzero prompts describe)",
        "templates": [base],
        # descriptions are prompts of their own: literal braces are doubled so they are never read as slots
        "labels": {
            label: [d.replace("{", "{{").replace("}", "}}") for d in items] for label, items in described.items()
        },
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return target


def read_descriptions(templates: Any) -> dict[str, list[str]]:
    """Label -> descriptions from a template set with per-label prompts (for the re-ranker); {} for others."""
    from ..prompts import load_templates

    chosen = load_templates(templates)
    return {
        label: [p.replace("{{", "{").replace("}}", "}") for p in prompts] for label, prompts in chosen.per_label.items()
    }
