"""The web UI's Duplicates tab (with a store): the store's duplicate groups as rows of thumbnails, the image to
keep first."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import ClipzeroError
from .core import Service
from .uitext import language_of, not_done, say

__all__ = ["dedup_tab", "kind_choices"]

#: Groups shown (the JSON from /v1/dedup or `clipzero dedup --out` holds them all).
_GROUPS_SHOWN = 60


def dedup_tab(service: Service, worded: Callable[..., Any], language: Any, root: Path) -> None:
    """Build the tab's components inside the current gr.Blocks; ``worded`` registers a component's words,
    ``language`` is the UI's language switch, ``root`` the upload folder (the list of files that could go is
    served from there)."""
    from ..dedup import default_threshold

    with gr.Row():
        cut = worded(gr.Slider(0.05, 1.0, value=default_threshold(service.encoder.id), step=0.01,
                               label=say("dedup_cut")), "dedup_cut")  # fmt: skip
        verify = worded(gr.Checkbox(value=True, label=say("dedup_verify")), "dedup_verify")
    kinds = worded(gr.CheckboxGroup(kind_choices("en"), value=[v for _, v in kind_choices("en")],
                                    label=say("dedup_kinds"), elem_id="dedup-kinds"), "dedup_kinds", "kinds")
    go = worded(gr.Button(say("dedup_go"), variant="primary", elem_id="dedup-button"), "dedup_go", "value")
    message = gr.Markdown(elem_id="dedup-message", elem_classes=["clipzero-message"])
    summary = gr.Markdown(elem_id="dedup-summary")
    listing = worded(gr.File(label=say("dedup_list"), height=90, elem_id="dedup-list"), "dedup_list")
    rows = gr.HTML(elem_id="dedup-groups")

    def run(threshold: float, check: bool, chosen: list[str], lang: str = "en") -> tuple[str, str, dict[str, Any]]:
        try:
            report = service.dedup(threshold, verify=check, kinds=list(chosen or ()))
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        groups = report["groups"]
        exact = sum(g["kind"] == "exact" for g in groups)
        text = say("dedup_summary", lang, groups=len(groups), exact=exact, near=len(groups) - exact,
                   redundant=report["redundant"], images=report["images"])  # fmt: skip
        shown = enumerate(groups[:_GROUPS_SHOWN], 1)
        html_rows = "".join(_row(n, g, service.settings.max_pixels, lang) for n, g in shown)
        return text, html_rows, report

    def run_api(threshold: float, check: bool, chosen: list[str]) -> tuple[str, str]:
        text, html_rows, _ = run(threshold, check, chosen)
        return text, html_rows

    def run_in_place(threshold: float, check: bool, chosen: list[str], choice: str) -> tuple[Any, ...]:
        lang = language_of(choice)
        try:
            text, html_rows, report = run(threshold, check, chosen, lang)
        except gr.Error as exc:
            return not_done(exc.message, choice), gr.skip(), gr.skip(), gr.skip()
        return "", text, html_rows, _could_go(report, root) if report["redundant"] else None

    go.click(run_in_place, [cut, verify, kinds, language], [message, summary, rows, listing], api_visibility="private")
    gr.Button(visible=False).click(run_api, [cut, verify, kinds], [summary, rows], api_name="dedup")


def kind_choices(lang: str) -> list[tuple[str, str]]:
    """The kinds of copy as (words in ``lang``, value) for the checkboxes."""
    from ..dedup import KINDS

    return [(say(f"kind.{kind}", lang), kind) for kind in KINDS]


def _could_go(report: dict[str, Any], root: Path) -> str:
    """A CSV of the files that could go: group, path, the image kept in its place, and the kinds of copy. A list to
    review and act on, never an action on the server."""
    import csv
    import uuid

    from ..outputs import csv_cell  # paths are inert in a spreadsheet, as in `clipzero dedup --out`

    out = root / f"dedup-{uuid.uuid4().hex}" / "could-go.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "path", "keep", "kinds", "similarity"])
        for number, group in enumerate(report["groups"], 1):
            for member in group["members"]:
                if member["path"] == group["keep"]:
                    continue
                match = member.get("match") or {}
                kinds = "+".join(match.get("kinds", ())) or group["kind"]
                writer.writerow([number, csv_cell(member["path"]), csv_cell(group["keep"]), kinds,
                                 f"{member['similarity']:.4f}"])
    return str(out)


def _row(number: int, group: dict[str, Any], max_pixels: int, lang: str = "en") -> str:
    cells = []
    for member in group["members"]:
        keep = member["path"] == group["keep"]
        note = say("keep", lang) if keep else \
            f"{_how(group['kind'], member.get('match'), lang)} {member['similarity']:.3f}"  # fmt: skip
        size = f"{member['width']}x{member['height']}" if member.get("width") else ""
        cells.append(
            f'<figure class="dedup-member{" dedup-keep" if keep else ""}" style="margin:0;width:132px">'
            f'{_thumbnail(member["path"], max_pixels)}<figcaption style="font-size:12px;word-break:break-all">'
            f"<b>{html.escape(note)}</b> {html.escape(size)}<br>{html.escape(Path(member['path']).name)}"
            "</figcaption></figure>"
        )
    kind = say(f"kind.{group['kind']}", lang)
    return (f'<div class="dedup-group" style="margin:8px 0"><div><b>{number}</b> · {html.escape(kind)}</div>'
            f'<div style="display:flex;gap:8px;flex-wrap:wrap">{"".join(cells)}</div></div>')  # fmt: skip


def _how(group_kind: str, match: dict[str, Any] | None, lang: str = "en") -> str:
    """The kinds of copy, with the share of the kept picture a crop shows: ``cropped 81%``."""
    if not match:
        return say(f"kind.{group_kind}", lang) if group_kind == "exact" else ""
    kept = f" {match['kept_area']:.0%}" if "cropped" in match["kinds"] else ""
    return "+".join(say(f"kind.{k}", lang) for k in match["kinds"]) + kept


def _thumbnail(path: str, max_pixels: int) -> str:
    """An inline JPEG of a stored image (pixels, never a server path handed to the browser to fetch)."""
    from ..images import thumbnail

    try:
        image = thumbnail(path, 128, max_pixels=max_pixels)
    except ClipzeroError:
        return '<div style="width:128px;height:128px;background:#eee">?</div>'
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" alt="" style="max-width:128px;max-height:128px">'
