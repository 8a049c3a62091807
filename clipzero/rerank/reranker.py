"""Re-ranking CLIP's shortlist with an LLM that reasons step by step.

CLIP's top-k candidates (with their probabilities, and label descriptions when there are any) are rendered into a
chain-of-thought template; the LLM describes what it sees, weighs each candidate, and ends with a JSON object
naming its choice by candidate number (or ``"none"``) and a ranking. The answer is checked against the candidates:
anything outside them, an unparseable reply, a timeout or a server error keeps CLIP's order, with the reason
recorded. The LLM can reorder CLIP's candidates or reject them all; it can never add a label.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClipzeroError, TemplateError
from ..prompts import normalize_label
from ..zeroshot import LabelScore, Prediction
from .client import ChatClient
from .templates import LLMTemplate, load_llm_template

__all__ = ["AnswerError", "RerankResult", "Reranker", "image_data_url", "parse_answer"]

_NONE = {"none", "null", "none of these", "都不是", "无", "没有"}


class AnswerError(ValueError):
    """The LLM's reply holds no usable answer."""


@dataclass
class RerankResult:
    """CLIP's prediction for one image and what the re-ranker made of it.

    Attributes:
        image: the image.
        label: the final label (None: "none of these", or CLIP's threshold said so).
        predictions: the candidates in final order (CLIP's scores kept).
        clip: CLIP's prediction.
        reranked: True when the LLM's answer was used.
        fallback: why CLIP's order was kept (None when the LLM's answer was used).
        reasoning: the LLM's reply text (its reasoning and the answer line).
        cached: the reply came from the response cache.
    """

    image: str
    label: str | None
    predictions: list[LabelScore]
    clip: Prediction
    reranked: bool = False
    fallback: str | None = None
    reasoning: str = ""
    cached: bool = False
    ranking: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "label": self.label,
            "predictions": [{"label": p.label, "score": p.score, "similarity": p.similarity} for p in self.predictions],
            "clip_label": self.clip.label,
            "rerank": {
                "used": self.reranked,
                "fallback": self.fallback,
                "reasoning": self.reasoning,
                "cached": self.cached,
            },
        }


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object embedded in ``text``, in order of appearance."""
    decoder = json.JSONDecoder()
    found = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def _candidate(value: Any, candidates: Sequence[str]) -> int | None:
    """A candidate index (0-based) for an answer value, -1 for "none", None when it names no candidate."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        number = int(value)
        if number == 0:
            return -1
        return number - 1 if 1 <= number <= len(candidates) else None
    if value is None:
        return -1
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+", text):
            return _candidate(int(text), candidates)
        key = normalize_label(text.strip("\"'"))
        if key in _NONE:
            return -1
        matches = [i for i, label in enumerate(candidates) if normalize_label(label) == key]
        return matches[0] if matches else None
    return None


def parse_answer(text: str, candidates: Sequence[str]) -> tuple[int, list[int]]:
    """The choice (0-based candidate index, or -1 for none) and a ranking from an LLM reply.

    The last JSON object with a ``choice`` key counts; chatter, code fences and reasoning around it are ignored.

    Raises:
        AnswerError: no such object, or its choice is not one of the candidates.
    """
    objects = [o for o in json_objects(text) if "choice" in o]
    if not objects:
        raise AnswerError("the reply holds no JSON object with a 'choice'")
    answer = objects[-1]
    choice = _candidate(answer["choice"], candidates)
    if choice is None:
        shown = json.dumps(answer["choice"], ensure_ascii=False)[:80]
        raise AnswerError(f"the chosen answer {shown} is not one of the {len(candidates)} candidates")
    ranking: list[int] = []
    raw_ranking = answer.get("ranking")
    for item in raw_ranking if isinstance(raw_ranking, list) else []:
        index = _candidate(item, candidates)
        if index is not None and index >= 0 and index not in ranking:
            ranking.append(index)
    return choice, ranking


def image_data_url(image: Any, max_side: int = 768) -> str:
    """An image (path, bytes or PIL) as a JPEG data URL, its longer side at most ``max_side``."""
    from ..images import load_image

    picture = load_image(image).copy()
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Reranker:
    """Re-rank CLIP's top-k with an LLM.

    Args:
        client: a :class:`~clipzero.rerank.client.ChatClient`.
        template: ``cot-en``, ``cot-zh`` or a YAML file (see ``prompts/rerank``).
        vision: send the image to the LLM (for vision-language models); else the LLM sees only the candidates,
            their scores and the descriptions.
        top_k: how many of CLIP's candidates the LLM chooses among.
        descriptions: label -> what it looks like (``clipzero prompts describe`` writes these).
        workers: concurrent requests in :meth:`rerank_many`.
    """

    def __init__(
        self,
        client: ChatClient,
        template: str | LLMTemplate = "cot-en",
        *,
        vision: bool = False,
        top_k: int = 5,
        descriptions: Mapping[str, Sequence[str]] | None = None,
        workers: int = 4,
    ) -> None:
        if top_k < 2:
            raise ClipzeroError(f"re-ranking needs at least 2 candidates, got top_k={top_k}")
        self.client = client
        self.template = template if isinstance(template, LLMTemplate) else load_llm_template(template)
        for needed in ("image_note", "answer_format"):
            if needed in self.template.variables() and needed not in self.template.extras:
                raise TemplateError(f"LLM template {self.template.name!r} uses {{{{{needed}}}}} but does not define it")
        self.vision = vision
        self.top_k = top_k
        self.descriptions = {normalize_label(k): list(v) for k, v in (descriptions or {}).items()}
        self.workers = workers

    def _values(self, candidates: Sequence[LabelScore]) -> dict[str, str]:
        extras = self.template.extras
        note = extras.get("image_note", "")
        if isinstance(note, dict):
            note = note.get("vision" if self.vision else "text", "")
        lines = [
            f"{i}. {json.dumps(c.label, ensure_ascii=False)} (CLIP {c.score:.3f})" for i, c in enumerate(candidates, 1)
        ]
        described = [
            f"- {json.dumps(c.label, ensure_ascii=False)}: "
            + "; ".join(json.dumps(d, ensure_ascii=False) for d in self.descriptions[normalize_label(c.label)][:3])
            for c in candidates
            if normalize_label(c.label) in self.descriptions
        ]
        header = str(extras.get("descriptions_header", "Label descriptions:"))
        return {
            "image_note": str(note),
            "candidates": "\n".join(lines),
            "count": str(len(candidates)),
            "descriptions": (header + "\n" + "\n".join(described)) if described else "",
            "answer_format": str(extras.get("answer_format", "")),
        }

    def messages(self, candidates: Sequence[LabelScore], image: Any = None) -> list[dict[str, Any]]:
        """The chat messages for one image's candidates."""
        system, user = self.template.render(self._values(candidates))
        content: Any = user
        if self.vision:
            if image is None:
                raise ClipzeroError("the vision re-ranker needs the image")
            content = [
                {"type": "text", "text": user},
                {"type": "image_url", "image_url": {"url": image_data_url(image)}},
            ]
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

    def rerank(self, prediction: Prediction, image: Any = None) -> RerankResult:
        """Re-rank one CLIP prediction; never raises for an LLM failure (CLIP's order is kept, with the reason)."""
        candidates = prediction.predictions[: self.top_k]
        keep = RerankResult(prediction.image, prediction.label, list(prediction.predictions), prediction)
        if prediction.error is not None or len(candidates) < 2:
            keep.fallback = prediction.error or "fewer than 2 candidates: nothing to re-rank"
            return keep
        try:
            reply = self.client.chat(self.messages(candidates, image if image is not None else prediction.image))
        except ClipzeroError as exc:
            keep.fallback = f"LLM call failed: {exc}"
            return keep
        keep.reasoning, keep.cached = reply.text, reply.cached
        try:
            choice, ranking = parse_answer(reply.text, [c.label for c in candidates])
        except AnswerError as exc:
            keep.fallback = f"unusable LLM answer: {exc}"
            return keep
        if choice == -1:
            keep.label, keep.reranked = None, True
            return keep
        order = [choice] + [i for i in ranking if i != choice]
        order += [i for i in range(len(candidates)) if i not in order]
        reordered = [candidates[i] for i in order] + list(prediction.predictions[self.top_k :])
        keep.predictions, keep.label, keep.reranked = reordered, candidates[choice].label, True
        keep.ranking = [candidates[i].label for i in order]
        return keep

    def rerank_many(self, predictions: Sequence[Prediction], images: Sequence[Any] | None = None) -> list[RerankResult]:
        """Re-rank many predictions with up to ``workers`` requests in flight; results in input order."""
        sources = list(images) if images is not None else [None] * len(predictions)
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            return list(pool.map(self.rerank, predictions, sources))
