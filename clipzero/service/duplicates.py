"""``POST /v1/dedup``: the server's store's duplicate groups (exact and near), with the image to keep in each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from .core import Service

__all__ = ["DedupJSON", "add_dedup_route"]


class DedupJSON(BaseModel):
    """How to group the store's images."""

    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(default=None, gt=0.0, le=1.0,
                                    description="candidate cosine cut (default: measured for the model family)")
    exact_only: bool = Field(default=False, description="only the same bytes under several paths")
    verify: bool = Field(default=True, description="check candidates on their pixels (false: one embedding cut)")
    kinds: list[Literal["exact", "resized", "re-encoded", "cropped", "turned", "edited"]] | None = Field(
        default=None, max_length=6, description="only members whose every kind of copy is one of these")


def add_dedup_route(app: FastAPI, service: Service, bounded: Callable[..., Awaitable[Any]],
                    json_body: Callable[[Request, type[BaseModel]], Awaitable[Any]], request_schema: dict[str, Any],
                    ) -> None:  # fmt: skip
    """Register the route (before the API's catch-all for unknown /v1 paths)."""

    @app.post("/v1/dedup", tags=["search"], openapi_extra=request_schema)
    async def dedup(request: Request) -> dict[str, Any]:
        """Groups of duplicate images in the server's store: ``exact`` (same bytes) and ``near`` (resized,
        re-encoded, cropped, turned or edited copies), each with the image to keep (largest, then sharpest), every
        member's similarity to it and, for a near member, its ``match``: the kinds of copy, the share of the kept
        picture it shows and its turn."""
        body = await json_body(request, DedupJSON)
        report = await bounded(lambda deadline: service.dedup(body.threshold, body.exact_only, body.verify, deadline,
                                                              body.kinds))  # fmt: skip
        return {"model": service.encoder.id, **report}
