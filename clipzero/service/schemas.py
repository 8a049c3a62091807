"""The request and response bodies of the JSON HTTP API (its OpenAPI schema comes from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ClassifyJSON",
    "ClassifyResponse",
    "ClassifyResult",
    "EmbedJSON",
    "SearchJSON",
    "json_request",
    "multipart_schema",
]


class ClassifyJSON(BaseModel):
    """Classify base64 images (plain or data URLs) against labels."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, description="base64-encoded image files (or data: URLs)")
    labels: list[str] | str = Field(
        default=[],
        description="labels as a list, or one string separated by commas or newlines; none: the server's --head",
    )
    names: list[str] | None = Field(default=None, description="a name per image, used in results and errors")
    templates: str | list[str] | None = Field(
        default=None,
        description="a built-in template set name, or a list of templates each with a {label} slot (never a file); "
        "default: the server's --templates",
    )
    top_k: int = Field(default=5, ge=1, le=100)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="no label below this top probability")
    reject: Literal["auto"] | None = Field(default=None, description="auto: no label ('none of these') for an image "
                                           "that fits none of the labels (the model's calibrated similarity cut)")
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0, description="no label when the best "
                                         "label's cosine similarity is below this")
    rerank: bool = Field(default=False, description="re-rank with the server's LLM, when it has one")
    multi_label: bool = Field(default=False, description="every label that applies (results carry 'labels', "
                              "maybe empty), decided per label by the model's calibrated cut")
    views: Literal[1, 5, 10] | None = Field(default=None, description="with multi_label: views of each image "
                                            "(1 whole, 5 with quarters, 10 with a 3x3 grid of half-size crops)")


class EmbedJSON(BaseModel):
    """Texts or base64 images to embed (one of the two)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] | None = None
    images: list[str] | None = None


class SearchJSON(BaseModel):
    """A text or a base64 image to search the server's store with."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    image: str | None = None
    top_k: int = Field(default=10, ge=1, le=1000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text must not be blank")
        return value


class Prediction(BaseModel):
    label: str
    score: float
    similarity: float


class RerankInfo(BaseModel):
    used: bool
    fallback: str | None = None
    reasoning: str | None = None
    cached: bool = False


class RejectionInfo(BaseModel):
    """Why an image kept or lost its label under ``reject`` or ``min_similarity``."""

    score: float = Field(description="rejection score: (similarity - threshold) / spread; negative: none of these")
    similarity: float = Field(description="the best label's cosine similarity")
    threshold: float = Field(description="the similarity cut used")
    rejected: bool
    nearest: str = Field(description="the best label, kept or not")
    nearest_score: float = Field(description="its probability among the labels")
    source: str = Field(description="reference (the model's calibrated cut), calibration or min-similarity")


class TagInfo(BaseModel):
    """A label that applies (multi-label)."""

    label: str
    score: float = Field(description="confidence that it applies, 0 to 1")
    similarity: float = Field(description="cosine similarity of the label and its best view")
    region: list[float] = Field(description="that view: left, top, right, bottom as fractions of the image")


class ClassifyResult(BaseModel):
    """One image's result: ``label`` and ``predictions``, or only ``error`` for an image that could not be read."""

    image: str
    label: str | None = None
    labels: list[TagInfo] | None = Field(default=None, description="multi_label: every label that applies")
    predictions: list[Prediction] = []
    clip_label: str | None = Field(default=None, description="CLIP's own top label, when re-ranked")
    rerank: RerankInfo | None = None
    rejection: RejectionInfo | None = None
    error: str | None = None


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


def multipart_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["images"],
        "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "labels": {"type": "string", "description": "labels separated by commas or newlines"},
            "templates": {"type": "string", "description": "a built-in set name, or templates (one per line)"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 100},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1},
            "reject": {"type": "string", "enum": ["auto"]},
            "min_similarity": {"type": "number", "minimum": -1, "maximum": 1},
            "multi_label": {"type": "boolean"},
            "views": {"type": "integer", "enum": [1, 5, 10]},
        },
    }


def json_request(model: type[BaseModel], multipart: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that reads its body itself (so that it can enforce size limits)."""
    content: dict[str, Any] = {
        "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
    }
    if multipart is not None:
        content["multipart/form-data"] = {"schema": multipart}
    return {"requestBody": {"required": True, "content": content}}
