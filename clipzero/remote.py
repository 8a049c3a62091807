"""Classifying through a running ``clipzero serve``: the warm path for repeated calls (``--server URL``).

A command that starts cold spends seconds importing torch and loading the model; a server has both ready. The
CLI reads the image files itself and sends their bytes (the server never opens a client's path), with the labels,
the template set (by name, or its templates inline) and the cuts, and turns the server's answer back into the
same :class:`~clipzero.zeroshot.Prediction` objects, so the output is the one the in-process path prints.

Only the standard library is used here, so this path imports neither torch nor an HTTP package.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from .errors import ClipzeroError, ConfigError, ImageError, LabelError

__all__ = ["ServerUnavailable", "classify_on_server", "server_info"]


class ServerUnavailable(ClipzeroError):
    """No clipzero server answers at the address, or it cannot serve this request (the caller falls back)."""


def _request(url: str, body: Any | None, key: str | None, timeout: float) -> Any:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # the user's own server
            return json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        if exc.code == 401:
            raise ConfigError(f"the server at {url} refused the key: set CLIPZERO_API_KEY to its key") from exc
        if exc.code in (400, 413, 422):
            raise LabelError(f"the server refused the request: {message}") from exc
        raise ServerUnavailable(f"the server at {url} answered {exc.code}: {message}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerUnavailable(f"no clipzero server answers at {url} ({reason})") from exc


def server_info(base: str, key: str | None = None, timeout: float = 2.0) -> dict[str, Any]:
    """What the server at ``base`` runs (``GET /v1/models``).

    Raises:
        ServerUnavailable: nothing answers there, or not a clipzero server.
    """
    info = _request(base.rstrip("/") + "/v1/models", None, key, timeout)
    if not isinstance(info, dict) or "model" not in info or "limits" not in info:
        raise ServerUnavailable(f"{base} does not answer like a clipzero server")
    return info


def classify_on_server(
    base: str,
    images: Sequence[str],
    labels: Sequence[str],
    *,
    templates: str | list[str],
    top_k: int,
    threshold: float | None = None,
    reject: str | None = None,
    min_similarity: float | None = None,
    key: str | None = None,
    info: dict[str, Any] | None = None,
    timeout: float = 600.0,
    multi_label: bool = False,
    views: int | None = None,
) -> list[Any]:
    """Classify image files on a running server: one Prediction per image, in order, as the in-process path gives.

    Files that cannot be read here get their error here, in the pipeline's words; the rest are sent in requests
    within the server's limits.

    Raises:
        ServerUnavailable: the server stopped answering, or could read none of a request's images.
        LabelError, ConfigError: the server refused the request (bad labels, the key).
    """
    from .images import read_image_file
    from .predictions import LabelScore, Prediction, Tag
    from .rejection import Rejection

    info = info or server_info(base, key)
    limits = info["limits"]
    budget = int(limits["max_upload_bytes"] * 0.7)  # base64 and JSON add a third
    results: dict[int, Prediction] = {}
    readable: list[tuple[int, str, bytes]] = []
    for index, path in enumerate(images):
        try:
            readable.append((index, os.fspath(path), read_image_file(path)[0]))
        except ImageError as exc:
            results[index] = Prediction(image=os.fspath(path), label=None, error=exc.reason)
    batches: list[list[tuple[int, str, bytes]]] = []
    size = 0  # bytes in the last batch
    for item in readable:
        if not batches or len(batches[-1]) >= limits["max_images"] or size + len(item[2]) > budget:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item[2])
    for batch in batches:
        body = {"images": [base64.b64encode(data).decode("ascii") for _, _, data in batch],
                "names": [name for _, name, _ in batch], "labels": list(labels), "templates": templates,
                "top_k": top_k, "threshold": threshold, "reject": reject, "min_similarity": min_similarity}  # fmt: skip
        if multi_label:  # only when asked: a server of an older version refuses fields it does not know
            body.update(multi_label=True, views=views)
        try:
            answer = _request(base.rstrip("/") + "/v1/classify", body, key, timeout)
        except LabelError as exc:
            if "no image could be read" in str(exc):
                raise ServerUnavailable(str(exc)) from exc  # the in-process path words each image's error
            raise
        for (index, _, _), row in zip(batch, answer["results"]):
            scores = [LabelScore(p["label"], p["score"], p["similarity"]) for p in row.get("predictions") or []]
            cut = row.get("rejection")
            rejection = Rejection(**cut) if cut else None
            tags = [Tag(t["label"], t["score"], t["similarity"], tuple(t["region"])) for t in row["labels"]] if (
                row.get("labels") is not None) else None  # fmt: skip
            results[index] = Prediction(image=row["image"], label=row.get("label"), predictions=scores,
                                        error=row.get("error"), rejection=rejection, tags=tags)  # fmt: skip
    return [results[i] for i in range(len(images))]
