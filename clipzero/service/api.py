"""The JSON HTTP API (FastAPI): /v1/classify, /v1/search, /v1/embed, /v1/embeddings (OpenAI-compatible),
/v1/models, /healthz.

Errors are JSON, ``{"error": {"type": ..., "message": ...}}``, with the status that says whose fault it is: 400
an unreadable image, 401 a missing or wrong API key, 404 a feature this server runs without (no store, no LLM),
413 an upload over the size limit, 422 invalid labels or fields. Nothing a client sends should give a 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ClipzeroError, ImageError, LabelError, RequestError, StoreError, TemplateError
from ..factory import split_labels
from .core import (
    DeadlineExceeded,
    NotAvailable,
    PayloadTooLarge,
    ServerBusy,
    Service,
    Unauthorized,
    deadline_after,
    decode_base64,
)
from .duplicates import DedupJSON, add_dedup_route
from .embeddings import EmbeddingsJSON, openai_embeddings
from .guard import ClientPathRefused
from .schemas import ClassifyJSON, ClassifyResponse, EmbedJSON, SearchJSON, json_request, multipart_schema

__all__ = ["create_api"]

_STATUS = [
    (PayloadTooLarge, 413),
    (Unauthorized, 401),
    (NotAvailable, 404),
    (DeadlineExceeded, 503),
    (ServerBusy, 503),
    (ClientPathRefused, 400),
    (ImageError, 400),
    (LabelError, 422),
    (RequestError, 422),
    (TemplateError, 422),
    (StoreError, 409),
]


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def create_api(service: Service) -> FastAPI:
    """The FastAPI app for a running service (the web UI is mounted on it separately)."""
    settings = service.settings
    app = FastAPI(
        title="clipzero",
        version=__version__,
        description="Zero-shot image classification with open CLIP models: label images with free-text labels.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    _offline_docs(app)
    timeout = settings.request_timeout_s

    async def bounded(work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking work in the thread pool; past the per-request time limit the client gets 503."""
        deadline = deadline_after(timeout)
        try:
            return await asyncio.wait_for(run_in_threadpool(work, *args, deadline=deadline, **kwargs), timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise DeadlineExceeded(
                f"the request took longer than this server's limit of {timeout:g} s (--request-timeout)"
            ) from exc

    @app.exception_handler(ClipzeroError)
    async def clipzero_error(request: Request, exc: ClipzeroError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 422)
        response = _error(status, type(exc).__name__, str(exc))
        if isinstance(exc, ServerBusy):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "ValidationError", _describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    async def read_body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_upload_bytes:
                raise PayloadTooLarge(f"upload over this server's limit of {settings.max_upload_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(request: Request, model: type[BaseModel]) -> Any:
        body = await read_body(request)
        try:
            return model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise RequestError(_describe_validation(exc.errors())) from exc

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded and the batcher runs."""
        return {"status": "ok", "model": service.encoder.id, "version": __version__}

    @app.get("/v1/models", tags=["service"])
    def models() -> dict[str, Any]:
        """The model this server runs, its precision and device, and what else it offers."""
        encoder = service.encoder
        return {
            "model": encoder.id,
            "spec": encoder.spec,
            "precision": encoder.precision,
            "device": str(encoder.device),
            "embed_dim": encoder.embed_dim,
            "store": str(settings.store) if settings.store else None,
            "head": {"path": settings.head, "classes": service.head.labels} if service.head is not None else None,
            "rerank": service.has_llm,
            "batching": {
                "max_batch": service.batcher.max_batch,
                "batches": service.batcher.stats.batches,
                "images": service.batcher.stats.images,
                "mean_batch": round(service.batcher.stats.mean_batch, 2),
            },
            "encoded": {"texts": encoder.texts_encoded, "images": encoder.images_encoded},
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_images": settings.max_images,
                "max_labels": settings.max_labels,
                "max_label_chars": settings.max_label_chars,
                "request_timeout_s": settings.request_timeout_s,
                "max_pixels": settings.max_pixels,
                "max_request_pixels": service.pixel_budget,
            },
            "lane": {"slots": service.lane.slots, "queue": service.lane.queue, "waiting": service.lane.waiting,
                     "refused": service.lane.refused},
        }

    @app.post(
        "/v1/classify",
        tags=["classify"],
        response_model=ClassifyResponse,
        response_model_exclude_unset=True,
        openapi_extra=json_request(ClassifyJSON, multipart=multipart_schema()),
    )
    async def classify(request: Request) -> Any:
        """Label images: multipart (image files plus ``labels``) or JSON (base64 images)."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            images, fields = await _read_multipart(request, settings)
            try:
                top_k = int(fields.get("top_k") or 5)
                threshold = float(fields["threshold"]) if fields.get("threshold") not in (None, "") else None
                cut = fields.get("min_similarity")
                min_similarity = float(cut) if cut not in (None, "") else None
            except ValueError as exc:
                raise RequestError(f"top_k, threshold and min_similarity must be numbers: {exc}") from exc
            if not 1 <= top_k <= 100 or (threshold is not None and not 0.0 <= threshold <= 1.0):
                raise RequestError("top_k must be 1 to 100 and threshold 0 to 1")
            if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
                raise RequestError("min_similarity must be a cosine similarity, -1 to 1")
            reject = fields.get("reject") or None
            if reject not in (None, "auto"):
                raise RequestError(f"reject must be auto or left out, got {reject[:40]!r}")
            labels = split_labels(fields.get("labels") or "")
            templates, rerank = fields.get("templates") or None, fields.get("rerank") in ("1", "true", "on")
            multi_label = fields.get("multi_label") in ("1", "true", "on")
            views = _views(fields.get("views"))
        else:
            body = await json_body(request, ClassifyJSON)
            names = body.names or [f"image-{i}" for i in range(len(body.images))]
            if len(names) != len(body.images):
                raise RequestError(f"{len(names)} names for {len(body.images)} images")
            images = [(name, decode_base64(data, name)) for name, data in zip(names, body.images)]
            labels, templates, top_k, threshold, rerank = (
                split_labels(body.labels), body.templates, body.top_k, body.threshold, body.rerank,
            )  # fmt: skip
            reject, min_similarity = body.reject, body.min_similarity
            multi_label, views = body.multi_label, body.views
        results = await bounded(
            service.classify, images, labels, templates=templates, top_k=top_k, threshold=threshold, rerank=rerank,
            reject=reject, min_similarity=min_similarity, multi_label=multi_label, views=views,
        )  # fmt: skip
        return {"model": service.encoder.id, "results": results}

    @app.post(
        "/v1/embed",
        tags=["embed"],
        openapi_extra=json_request(EmbedJSON),
    )
    async def embed(request: Request) -> dict[str, Any]:
        """L2-normalised embeddings of texts or base64 images (float32, as lists)."""
        body = await json_body(request, EmbedJSON)
        if (body.texts is None) == (body.images is None):
            raise RequestError("give exactly one of 'texts' or 'images'")
        if body.texts is not None:
            vectors = await bounded(lambda texts, deadline: service.embed_texts(texts), body.texts)
        else:
            images = [(f"image-{i}", decode_base64(data, f"image-{i}")) for i, data in enumerate(body.images or [])]
            vectors = await bounded(service.embed_images, images)
        return {"model": service.encoder.id, "dim": int(vectors.shape[1]), "vectors": vectors.round(6).tolist()}

    @app.post("/v1/embeddings", tags=["embed"], openapi_extra=json_request(EmbeddingsJSON))
    async def embeddings(request: Request) -> dict[str, Any]:
        """OpenAI-compatible embeddings: texts, and images as ``data:image/...;base64,`` URLs, in one space."""
        body = await json_body(request, EmbeddingsJSON)
        return await bounded(openai_embeddings, service, body)

    @app.post(
        "/v1/search",
        tags=["search"],
        openapi_extra=json_request(SearchJSON),
    )
    async def search(request: Request) -> dict[str, Any]:
        """The store's nearest images to a text or an image."""
        body = await json_body(request, SearchJSON)
        if (body.text is None) == (body.image is None):
            raise RequestError("give exactly one of 'text' or 'image'")
        image = decode_base64(body.image, "query image") if body.image is not None else None
        hits = await bounded(service.search, text=body.text, image=image, top_k=body.top_k)
        return {"model": service.encoder.id, "results": hits}

    add_dedup_route(app, service, bounded, json_body, json_request(DedupJSON))

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)  # fmt: skip
    async def unknown(request: Request, rest: str) -> JSONResponse:
        """Unknown /v1 routes and wrong methods answer in the API's error shape (not the UI's)."""
        allowed = sorted(
            method
            for route in app.routes
            if getattr(route, "path", None) == request.url.path and getattr(route, "name", "") != "unknown"
            for method in getattr(route, "methods", ()) or ()
        )
        if allowed:
            message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
            response = _error(405, "MethodNotAllowed", message)
            response.headers["allow"] = ", ".join(allowed)
            return response
        return _error(404, "NotFound", f"no such endpoint: {request.url.path}")

    return app


def _offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI's files served by this app (from the swagger-ui-bundle package), never a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # the web extra brings it; without it, say so instead of a blank page
        swagger_ui_path = None
    if swagger_ui_path is not None:
        from starlette.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if swagger_ui_path is None:
            return HTMLResponse(
                "<p>The API documentation page needs the swagger-ui-bundle package: "
                "<code>pip install 'clipzero[web]'</code>. The schema is at "
                "<a href='/openapi.json'>/openapi.json</a>.</p>"
            )
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="clipzero API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


async def _read_multipart(request: Request, settings: Any) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    from starlette.datastructures import UploadFile

    try:  # counts checked by the parser as the stream arrives, before the parts pile up
        form = await request.form(max_files=settings.max_images, max_fields=settings.max_labels + 16,
                                  max_part_size=settings.max_upload_bytes)  # fmt: skip
    except Exception as exc:  # malformed multipart, a part over the limit
        raise RequestError(f"could not read the multipart form: {exc}") from exc
    images: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key in ("images", "image", "file", "files"):
                images.append((value.filename or f"image-{len(images)}", await value.read()))
        elif key == "labels" and key in fields:
            fields[key] += "\n" + value  # repeated labels fields
        else:
            fields[key] = value
    return images, fields


def _views(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    if text not in ("1", "5", "10"):
        raise RequestError(f"views must be 1, 5 or 10, got {str(text)[:20]!r}")
    return int(text)


def _describe_validation(errors: Any) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or json.dumps(errors)[:200]
