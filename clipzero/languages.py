"""Which models read Chinese, and which templates a label gets when no template set was chosen.

Most open CLIP models have English-trained text towers: they read Chinese labels poorly. clipzero knows the families
that read Chinese (Chinese-CLIP, AltCLIP, open_clip's multilingual XLM-RoBERTa towers, multilingual SigLIP, and the
bundled model), warns once when Chinese labels meet an English-only tower, and names a model that reads them.

When no template set was chosen (the ``auto`` set, clipzero's default), each label gets its own language's templates:
``ensemble-en`` for English labels and ``ensemble-zh`` for Chinese ones, in one label list.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ClipzeroWarning
from .prompts import TemplateSet, guess_language, load_templates

__all__ = ["CHINESE_MODELS", "ChineseModel", "choose_templates", "reads_chinese", "warn_if_english_only"]


@dataclass(frozen=True)
class ChineseModel:
    """A model that reads Chinese, with its published zero-shot figure and where it comes from."""

    spec: str
    figure: str
    source: str


#: Models that read Chinese well, best known figure first. The figures are the authors' own, as published.
CHINESE_MODELS = (
    ChineseModel("hf-transformers:OFA-Sys/chinese-clip-vit-base-patch16",
                 "ImageNet zero-shot with Chinese prompts: 48.3%", "OFA-Sys, Chinese-CLIP (README results)"),
    ChineseModel("hf-transformers:OFA-Sys/chinese-clip-vit-large-patch14",
                 "ImageNet zero-shot with Chinese prompts: 54.7%", "OFA-Sys, Chinese-CLIP (README results)"),
    ChineseModel("hf-transformers:OFA-Sys/chinese-clip-vit-huge-patch14",
                 "ImageNet zero-shot with Chinese prompts: 59.6%", "OFA-Sys, Chinese-CLIP (README results)"),
    ChineseModel("xlm-roberta-large-ViT-H-14:frozen_laion5b_s13b_b90k", "Chinese ImageNet zero-shot: 55.7%",
                 "open_clip, multilingual results (LAION)"),
    ChineseModel("xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k", "reads Chinese (multilingual text tower)",
                 "open_clip"),
    ChineseModel("hf-transformers:BAAI/AltCLIP", "reads Chinese (bilingual XLM-R text tower)", "BAAI, AltCLIP"),
    ChineseModel("clipzero-shapes", "the bundled model: English and Chinese captions of its own shapes world",
                 "clipzero"),
)  # fmt: skip

#: Text towers that read Chinese, by a word in the model's architecture or id.
_MULTILINGUAL = ("xlm-roberta", "mt5", "nllb", "chinese_clip", "altclip", "multilingual", "siglip2")

_warned: set[str] = set()


def reads_chinese(arch: str, model_id: str = "") -> bool:
    """True when a model's text tower reads Chinese (by its architecture, or its id for transformers models)."""
    text = f"{arch} {model_id}".lower()
    return model_id.startswith("clipzero-shapes") or any(word in text for word in _MULTILINGUAL)


def warn_if_english_only(encoder: Any, labels: Sequence[str]) -> None:
    """Warn once per model when Chinese labels meet an English-only text tower, naming one that reads Chinese."""
    if encoder.id in _warned or guess_language(labels) != "zh" or reads_chinese(encoder.arch, encoder.id):
        return
    _warned.add(encoder.id)
    best = CHINESE_MODELS[0]
    warnings.warn(
        f"Chinese labels, but model {encoder.spec!r} has an English-only text tower that reads Chinese poorly; for "
        f"Chinese try --model {best.spec} ({best.figure}) or another model `clipzero models --chinese` lists",
        ClipzeroWarning,
        stacklevel=3,
    )


def choose_templates(base: TemplateSet, labels: Iterable[str]) -> tuple[TemplateSet, dict[str, TemplateSet], str]:
    """(the set the classifier reports, the set of each label written in another language, a note for the output).

    Only the ``auto`` set follows the labels; a chosen set is used for every label, as chosen.
    """
    if not base.follows_labels:
        return base, {}, ""
    labels = list(labels)
    chinese = [label for label in labels if guess_language([label]) == "zh"]
    if not chinese:
        return base, {}, ""
    zh = load_templates("ensemble-zh")
    if len(chinese) == len(labels):
        return zh, {}, "Chinese labels: the ensemble-zh templates (no template set was given)"
    note = (f"{len(chinese)} Chinese label(s) take the ensemble-zh templates, the other {len(labels) - len(chinese)} "
            "ensemble-en (no template set was given)")  # fmt: skip
    return base, dict.fromkeys(chinese, zh), note
