"""The agent tools' definitions, written once: name, description for a model to read, input and output JSON schema.

The MCP server (``clipzero mcp``) lists them as MCP tools; ``clipzero tools --format openai`` prints them as
OpenAI function-calling tools and ``--format json-schema`` as plain JSON Schema. The limits in the schemas are the
server's (:class:`ToolLimits`), so a model sees the bounds the server enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TOOL_NAMES", "ToolLimits", "ToolSpec", "json_schema_tools", "openai_tools", "tool_specs"]


@dataclass(frozen=True)
class ToolLimits:
    """What one tool call may ask for; anything over is refused before work starts."""

    max_images: int = 64  # images per classify or embed call
    max_labels: int = 1000  # labels per call
    max_label_chars: int = 300  # characters per label, per text
    max_texts: int = 256  # texts per embed call
    max_image_mb: float = 32.0  # bytes of one image, file or data URL
    max_pixels: int = 64_000_000  # pixels per image
    max_top_k: int = 100

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what a model reads to decide when and how to call it, and what it gets back."""

    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    read_only: bool = True
    annotations: dict[str, Any] = field(default_factory=dict)


_IMAGE_REF = (
    "An image: a file path inside a folder this server may read (its --root folders), or the image itself as a "
    "data URL such as 'data:image/png;base64,iVBOR...'. Paths outside those folders are refused."
)
_SCORES = (
    "Each label has a score, its softmax probability among the given labels (the scores of one image sum to 1, so "
    "they say which label fits best, not whether any fits), and a similarity, the raw cosine similarity between "
    "image and label prompt (comparable across calls with the same model; low for every label when none fits)."
)
_LABEL_SCORE = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "score": {"type": "number", "description": "probability among the given labels, 0-1"},
        "similarity": {"type": "number", "description": "cosine similarity of image and label, -1 to 1"},
    },
    "required": ["label", "score", "similarity"],
}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _obj(properties: dict[str, Any], required: list[str], closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _labels(limits: ToolLimits) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": limits.max_label_chars},
        "minItems": 1,
        "maxItems": limits.max_labels,
        "description": "the candidate labels, free text, any language the model reads (e.g. ['cat', 'dog', "
        "'a red car']); the tool picks among exactly these",
    }


def _templates() -> dict[str, Any]:
    return {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "optional prompt templates: a built-in set name (see list_template_sets; 'photo' is one "
        "prompt per label, 'ensemble-en' averages many, '-zh' sets are Chinese), or your own templates, each with "
        "a {label} slot. Default: the server's set.",
    }


def _top_k(limits: ToolLimits, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": limits.max_top_k, "default": default,
            "description": "how many labels to return per image, best first"}  # fmt: skip


_THRESHOLD = {
    "type": ["number", "null"],
    "minimum": 0,
    "maximum": 1,
    "description": "optional: when the best label's probability is below this, the image gets label null ('none "
    "of these'); its scores are still returned",
}


_REJECT = {
    "type": ["string", "null"],
    "enum": ["auto", None],
    "description": "'auto': label null ('none of these') when the image fits none of the labels, judged by the "
    "best label's similarity against this model's calibrated cut; works with any number of labels, unlike "
    "threshold. Each result then carries a rejection object (score: negative means rejected; nearest label).",
}
_MULTI_LABEL = {
    "type": "boolean",
    "description": "true: every label that applies to each image (maybe none), each decided on its own by the "
    "model's calibrated cut, scored on the whole image and crops of it; do not combine with threshold or reject",
}
_VIEWS = {"type": ["integer", "null"], "enum": [1, 5, 10, None], "description": "with multi_label: views of each "
          "image (1: whole image; 10, the default: with a 3x3 grid of half-size crops; more views find small "
          "things, at about that many times the cost)"}  # fmt: skip
_TAG = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "score": {"type": "number", "description": "confidence that the label applies, 0-1"},
        "similarity": {"type": "number"},
        "region": {"type": "array", "items": {"type": "number"}, "description": "the view that scored it: left, "
                   "top, right, bottom as fractions of the image"},
    },
    "required": ["label", "score", "similarity", "region"],
}
_MIN_SIMILARITY = {
    "type": ["number", "null"],
    "minimum": -1,
    "maximum": 1,
    "description": "optional raw cut: label null when the best label's cosine similarity is below this (its scale "
    "depends on the model; prefer reject 'auto')",
}


def tool_specs(limits: ToolLimits | None = None) -> list[ToolSpec]:
    """Every tool, its schemas carrying ``limits`` (the defaults when None)."""
    limits = limits or ToolLimits()
    images = {"type": "array", "items": {"type": "string", "minLength": 1, "description": _IMAGE_REF},
              "minItems": 1, "maxItems": limits.max_images}  # fmt: skip
    result = _obj(
        {
            "image": {"type": "string", "description": "the image as given (a data URL is named images[i])"},
            "label": {**_NULLABLE_STRING, "description": "the best label, or null: 'none of these' (below the "
                      "threshold) or the image could not be read"},
            "predictions": {"type": "array", "items": _LABEL_SCORE, "description": "top-k labels, best first"},
            "error": {**_NULLABLE_STRING, "description": "why the image could not be read, else null"},
            "labels": {"type": ["array", "null"], "items": _TAG, "description": "with multi_label: every label "
                       "that applies, best first (empty: none of these)"},
            "rejection": {"type": ["object", "null"], "description": "with reject or min_similarity: score "
                          "(negative: none of these), similarity, threshold, rejected, nearest, nearest_score"},
        },
        ["image", "label", "predictions", "error"],
        closed=False,
    )
    hit = _obj(
        {
            "path": {"type": "string", "description": "the image file, as the store recorded it"},
            "score": {"type": "number", "description": "cosine similarity to the query, higher is closer"},
            "sha256": {"type": "string"},
            "paths": {"type": "array", "items": {"type": "string"}, "description": "every path of this content"},
        },
        ["path", "score", "sha256"],
        closed=False,
    )
    return [
        ToolSpec(
            "classify_images",
            "Classify images with your labels",
            "Zero-shot image classification: for each image, which of YOUR labels fits best, with scores. Use it "
            "to tag, sort or check images against any list of words, without training. " + _SCORES + " Set reject "
            "to 'auto' to get label null ('none of these') for images that fit none of the labels. Set multi_label "
            "for EVERY label that applies (a photo of a dog on a beach: both), in 'labels'.",
            _obj({"images": images, "labels": _labels(limits), "templates": _templates(),
                  "top_k": _top_k(limits, 5), "threshold": _THRESHOLD, "reject": _REJECT,
                  "min_similarity": _MIN_SIMILARITY, "multi_label": _MULTI_LABEL, "views": _VIEWS},
                 ["images", "labels"]),
            _obj({"model": {"type": "string"}, "results": {"type": "array", "items": result}}, ["model", "results"],
                 closed=False),
        ),
        ToolSpec(
            "search_images",
            "Search stored images by text or by image",
            "Find the images in one of this server's embedding stores that are closest to a text description "
            "(e.g. 'a dog on a beach') or to an example image. Results are best first with their cosine similarity; "
            "see the clipzero://stores resources for the stores. Give exactly one of text and image.",
            _obj(
                {
                    "text": {"type": "string", "minLength": 1, "maxLength": limits.max_label_chars,
                             "description": "what to look for, in words (always read as text, never as a path)"},
                    "image": {"type": "string", "minLength": 1, "description": _IMAGE_REF},
                    "store": {"type": "string", "description": "which store (its name); optional when the server "
                              "has one"},
                    "top_k": _top_k(limits, 10),
                },
                [],
            ),
            _obj({"store": {"type": "string"}, "model": {"type": "string"},
                  "results": {"type": "array", "items": hit}}, ["store", "results"], closed=False),
        ),
        ToolSpec(
            "tag_folder",
            "Tag every image in a folder into a result file",
            "Batch tagging: classify every image in a folder (inside this server's --root folders) with your labels "
            "and write one row per image to a result file (.jsonl, .csv or .parquet by its ending, also inside a "
            "root). Long-running: progress is reported as it goes. Resumable: calling it again with the same out "
            "file skips the images already there and retries the failed ones. Unreadable images are listed in "
            "<out>.errors.jsonl. Returns counts and how many images got each label.",
            _obj(
                {
                    "folder": {"type": "string", "minLength": 1, "description": "the folder of images"},
                    "labels": _labels(limits),
                    "out": {"type": "string", "minLength": 1, "description": "the result file to write or resume"},
                    "templates": _templates(),
                    "top_k": _top_k(limits, 5),
                    "threshold": _THRESHOLD,
                    "reject": _REJECT,
                    "min_similarity": _MIN_SIMILARITY,
                    "recursive": {"type": "boolean", "default": False, "description": "include sub-folders"},
                },
                ["folder", "labels", "out"],
            ),
            _obj(
                {
                    "out": {"type": "string"},
                    "errors_file": {"type": "string"},
                    "tagged": {"type": "integer", "description": "images tagged by this call"},
                    "skipped": {"type": "integer", "description": "images already in the file from an earlier call"},
                    "failed": {"type": "integer"},
                    "label_counts": {"type": "object", "additionalProperties": {"type": "integer"},
                                     "description": "rows of the whole file per top label ('none' for null)"},
                    "failures": {"type": "array", "items": _obj({"image": {"type": "string"},
                                 "error": {"type": "string"}}, ["image", "error"])},
                    "elapsed_s": {"type": "number"},
                },
                ["out", "errors_file", "tagged", "skipped", "failed", "label_counts", "failures"],
                closed=False,
            ),
            read_only=False,
        ),
        ToolSpec(
            "embed",
            "Embed texts and images as vectors",
            "The model's embedding vectors (L2-normalised float lists) of texts and images, in one space: the dot "
            "product of two vectors is their cosine similarity, text to image included. Use it to compare, cluster "
            "or index things yourself; to label images use classify_images.",
            _obj(
                {
                    "texts": {"type": "array", "items": {"type": "string", "minLength": 1,
                              "maxLength": limits.max_label_chars}, "maxItems": limits.max_texts},
                    "images": {**images, "minItems": 0},
                },
                [],
            ),
            _obj(
                {
                    "model": {"type": "string"},
                    "dim": {"type": "integer"},
                    "texts": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                    "images": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                },
                ["model", "dim", "texts", "images"],
                closed=False,
            ),
        ),
        ToolSpec(
            "describe_labels",
            "Describe labels with the server's LLM",
            "Ask the LLM this server is configured with (an OpenAI-compatible server) for short visual descriptions "
            "of each label, the kind that make zero-shot prompts more precise. Fails when the server has no LLM.",
            _obj(
                {
                    "labels": _labels(limits),
                    "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5,
                              "description": "descriptions per label"},
                    "language": {"type": "string", "enum": ["en", "zh"], "description": "language of the "
                                 "descriptions; default: Chinese for Chinese labels, else English"},
                },
                ["labels"],
            ),
            _obj(
                {
                    "descriptions": {"type": "object", "additionalProperties": {"type": "array",
                                     "items": {"type": "string"}}},
                    "failed": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "label -> why it has no descriptions"},
                },
                ["descriptions", "failed"],
            ),
        ),
        ToolSpec(
            "list_models",
            "List the models",
            "The image-text models clipzero can load, and which one this server runs. Cached models load without "
            "network. Changing the model means restarting the server with --model.",
            _obj({"cached_only": {"type": "boolean", "default": True,
                                  "description": "only models that load without network"}}, []),
            _obj(
                {
                    "running": {"type": "string", "description": "the model this server runs"},
                    "models": {"type": "array", "items": _obj({"spec": {"type": "string"}, "kind": {"type": "string"},
                               "cached": {"type": "boolean"}, "description": {"type": "string"}},
                               ["spec", "kind", "cached"], closed=False)},
                },
                ["running", "models"],
            ),
        ),
        ToolSpec(
            "list_template_sets",
            "List the prompt template sets",
            "The built-in prompt template sets for the templates argument: how each turns a label into prompts "
            "(e.g. 'a photo of a {label}.'), its language and size. Match the set's language to the labels'.",
            _obj({}, []),
            _obj(
                {
                    "default": {"type": "string", "description": "the set used when a call names none"},
                    "sets": {"type": "array", "items": _obj({"name": {"type": "string"},
                             "language": _NULLABLE_STRING, "templates": {"type": "integer"},
                             "example": {"type": "string"}, "description": {"type": "string"}},
                             ["name", "language", "templates", "example"], closed=False)},
                },
                ["default", "sets"],
            ),
        ),
    ]


TOOL_NAMES = tuple(spec.name for spec in tool_specs())


def openai_tools(limits: ToolLimits | None = None) -> list[dict[str, Any]]:
    """The tools in OpenAI's function-calling format (``tools=`` of the Chat Completions API)."""
    return [
        {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.input_schema}}
        for s in tool_specs(limits)
    ]


def json_schema_tools(limits: ToolLimits | None = None) -> list[dict[str, Any]]:
    """The tools as plain JSON Schema: name, title, description, inputSchema and outputSchema (MCP's field names)."""
    return [
        {"name": s.name, "title": s.title, "description": s.description, "inputSchema": s.input_schema,
         "outputSchema": s.output_schema}
        for s in tool_specs(limits)
    ]  # fmt: skip
