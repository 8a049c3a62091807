"""The Classify tab's results: the bars, the table, the notes and the gallery of one classification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClipzeroError
from .core import Service
from .uitext import inert, say

__all__ = ["chips", "classify_view", "results_file", "table_headers", "tile", "top_bars"]


def classify_view(service: Service, images: list[tuple[str, bytes]], results: list[dict[str, Any]], lang: str
                  ) -> tuple[Any, ...]:  # fmt: skip
    """(bars, table, notes, gallery, readable results) for the results of ``service.classify``. Captions start with
    the label; images that could not be read come last, as grey tiles that say so."""
    readable = [r for r in results if "error" not in r]
    shares = top_bars(readable[0]) if readable else {}
    table = [
        [r["image"], say("unreadable", lang), r["error"]]
        if "error" in r
        else [r["image"], _found(r, lang), ", ".join(f"{p['label']} {p['score']:.2f}" for p in r["predictions"][:3])]
        for r in results
    ]  # fmt: skip
    gallery, unread = [], []
    for (name, data), r in zip(images, results):
        if "error" in r:
            unread.append((_grey(256), f"{say('unreadable', lang)} · {Path(name).name}"))
            continue
        top = r["predictions"][0]
        caption = (_found(r, lang) if "labels" in r else f"{r['label']} {top['score']:.2f}" if r.get("label") else
                   say("none_caption", lang, label=top["label"]))  # fmt: skip
        gallery.append((tile(service, data, 256), f"{caption} · {Path(name).name}"))
    gallery += unread  # after the readable ones: a click's index is the result's
    notes = [f"**{inert(r['image'])}** {say('unreadable_note', lang)}: {inert(r['error'])}"
             for r in results if "error" in r]  # fmt: skip
    for r in readable:
        cut = r.get("rejection")
        if cut and cut["rejected"]:
            notes.append(f"**{inert(r['image'])}**: " + say("none_note", lang, score=f"{cut['score']:+.2f}",
                         nearest=inert(cut["nearest"]), similarity=f"{cut['similarity']:.3f}",
                         cut=f"{cut['threshold']:.3f}"))  # fmt: skip
    for r in readable:
        info = r.get("rerank")
        if info:
            used = say("llm_used", lang) if info["used"] else say("clip_kept", lang, why=inert(info["fallback"]))
            notes.append(f"**{inert(r['image'])}**: {used}"
                         + ("\n\n" + inert(info["reasoning"]) if info["reasoning"] else ""))  # fmt: skip
    return shares, {"headers": table_headers(lang), "data": table}, "\n\n---\n\n".join(notes), gallery, readable


def chips(results: list[dict[str, Any]], lang: str) -> str:
    """Multi-label results as a row of label chips per image (HTML; empty for single-label results)."""
    import html

    if not any("labels" in r for r in results):
        return ""
    rows = []
    for r in results:
        if "error" in r:
            tags = f'<span class="cz-chip cz-none">{html.escape(say("unreadable", lang))}</span>'
        else:
            tags = "".join(f'<span class="cz-chip">{html.escape(t["label"])} {t["score"]:.2f}</span>'
                           for t in r.get("labels", [])) or \
                f'<span class="cz-chip cz-none">({html.escape(say("none", lang))})</span>'  # fmt: skip
        name = html.escape(Path(r["image"]).name)
        rows.append(f'<div class="cz-tags"><span class="cz-name">{name}</span>{tags}</div>')
    return "".join(rows)


def results_file(root: Path, images: list[tuple[str, bytes]], results: list[dict[str, Any]]) -> str:
    """The results as the CLI writes them (CSV, and the unreadable images in its errors file beside it), in a new
    folder under the upload folder, where the page can download them."""
    import hashlib
    import uuid

    from ..outputs import ResultWriter

    multi = any("labels" in r for r in results)
    writer = ResultWriter(root / f"results-{uuid.uuid4().hex}" / "classify.csv", multi_label=multi)
    try:
        for (_, data), r in zip(images, results):
            if "error" in r:
                writer.write_error({"image": r["image"], "error": r["error"]})
            else:
                writer.write({**r, "sha256": hashlib.sha256(data).hexdigest()})
    finally:
        writer.close()
    return str(writer.path)


def table_headers(lang: str) -> list[str]:
    return [say("col.image", lang), say("col.label", lang), say("col.top3", lang)]


def _found(result: dict[str, Any], lang: str) -> str:
    """The label, or with multi-label every label that applies and its score; "(none of these)" when none."""
    if "labels" in result:
        return ", ".join(f"{t['label']} {t['score']:.2f}" for t in result["labels"]) or f"({say('none', lang)})"
    return str(result.get("label") or f"({say('none', lang)})")


def tile(service: Service, data: bytes, side: int, deadline: float | None = None) -> Any:
    """A gallery thumbnail; a grey tile when the large-image lane is full or the deadline passed (the result
    itself is kept)."""
    try:
        return service.thumbnail(data, side, deadline)
    except ClipzeroError:
        return _grey(side)


def _grey(side: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (side, side), (225, 225, 225))



def top_bars(result: dict[str, Any]) -> dict[str, float]:
    return {p["label"]: p["score"] for p in result["predictions"]}
