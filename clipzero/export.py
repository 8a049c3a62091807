"""Tags where photos live: XMP keywords for photo managers, and the ImageFolder layout for datasets.

Both read a result file of ``clipzero tag`` (CSV, JSON lines or Parquet; single- or multi-label) and act on the
images it names, one image at a time: a problem with one (the image moved, its sidecar damaged or read-only) is a
row in the report and the rest go on.

**XMP** (needs the ``xmp`` extra: pyexiv2, which bundles the exiv2 library, so nothing else is installed): each
image's labels become keywords in its XMP sidecar, ``photo.jpg.xmp`` (digiKam, darktable) or ``photo.xmp``
(Lightroom): ``dc:subject`` (flat keywords) and ``lr:hierarchicalSubject`` under a parent (``clipzero|red circle``).
The sidecar is merged, never clobbered: a person's keywords stay; the keywords an earlier run of clipzero wrote (those
whose hierarchical form is under the parent) are replaced; a rerun with the same labels changes nothing. The new
sidecar is written to a temporary file beside it and renamed over it, so a failure leaves the old one as it was.
``in_place`` writes the keywords into the image file itself instead (by the same rename; exiv2 rewrites the
metadata, not the pixels).

**Folders**: one folder per label (``none of these`` for images without one; a multi-label image in every folder
that applies), each image linked (or copied) in under its own name, the layout that ``clipzero finetune probe`` and
``torchvision.datasets.ImageFolder`` read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NONE_FOLDER", "ExportReport", "export_folders", "export_xmp", "labels_of", "sidecar_path"]

#: The folder of the images that got no label ("none of these").
NONE_FOLDER = "none of these"

_EMPTY_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>
"""


@dataclass
class ExportReport:
    """What an export did: files written, files already as they should be, and the failures as (image, reason)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"written": len(self.written), "unchanged": len(self.unchanged),
                "failed": [{"image": image, "error": reason} for image, reason in self.failed]}  # fmt: skip


def labels_of(row: dict[str, Any], min_score: float | None = None) -> list[str] | None:
    """The labels of a result row (every label that applies for multi-label), those under ``min_score`` left out;
    [] for "none of these"; None for a row that is an error."""
    if row.get("error"):
        return None
    if row.get("labels") is not None:  # multi-label
        return [t["label"] for t in row["labels"]
                if min_score is None or t.get("score") is None or t["score"] >= min_score]  # fmt: skip
    label = row.get("label")
    if not label:
        return []
    score = row.get("score")
    if score is None and row.get("predictions"):
        score = row["predictions"][0].get("score")
    return [label] if min_score is None or score is None or score >= min_score else []


def sidecar_path(image: str | os.PathLike[str], naming: str = "darktable") -> Path:
    """The XMP sidecar of ``image``: ``photo.jpg.xmp`` (digiKam, darktable) or ``photo.xmp`` (``lightroom``)."""
    path = Path(image)
    return path.with_suffix(".xmp") if naming == "lightroom" else path.with_name(path.name + ".xmp")


def export_xmp(rows: Iterable[dict[str, Any]], *, parent: str = "clipzero", naming: str = "darktable",
               in_place: bool = False, min_score: float | None = None) -> ExportReport:  # fmt: skip
    """Write each row's labels as XMP keywords beside its image (or, with ``in_place``, into it)."""
    from .extras import require

    require("xmp", "XMP export")
    report = ExportReport()
    for image, labels in _usable(rows, min_score, report):
        target = Path(image) if in_place else sidecar_path(image, naming)
        try:
            changed = _merge_keywords(target, labels, parent, create=not in_place)
        except (OSError, RuntimeError, ValueError) as exc:
            report.failed.append((image, f"{target.name}: {exc}; left as it was"))
            continue
        (report.written if changed else report.unchanged).append(str(target))
    return report


def _usable(rows: Iterable[dict[str, Any]], min_score: float | None, report: ExportReport,
            ) -> Iterable[tuple[str, list[str]]]:  # fmt: skip
    """(image, labels) of each row whose image is still there; the others go to the report's failures."""
    for row in rows:
        image = str(row.get("image", ""))
        labels = labels_of(row, min_score)
        if labels is None:
            report.failed.append((image, f"not tagged: {row.get('error')}"))
        elif not Path(image).is_file():
            report.failed.append((image, "the image is not there (moved or deleted since it was tagged)"))
        else:
            yield image, labels


def _merge_keywords(target: Path, labels: list[str], parent: str, create: bool) -> bool:
    """Put ``labels`` in ``target``'s XMP keywords in place of clipzero's earlier ones; False when nothing changed."""
    import pyexiv2

    if target.exists() and (not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222):
        raise PermissionError("read-only")  # by its mode too: a read-only file is a wish, even for root
    if target.exists():
        with target.open("rb"):  # unreadable: said here, before any copy is made
            pass
        current = _read_xmp(target)
    elif create:
        current = {}
    else:
        raise FileNotFoundError("not there")
    flat, tree = _listed(current.get("Xmp.dc.subject")), _listed(current.get("Xmp.lr.hierarchicalSubject"))
    prefix = f"{parent}|"
    earlier = {t[len(prefix):] for t in tree if t.startswith(prefix)}  # what clipzero wrote before
    keep_flat = [k for k in flat if k not in earlier or k in labels]
    new_flat = keep_flat + [label for label in labels if label not in keep_flat]
    new_tree = [t for t in tree if not t.startswith(prefix)] + [prefix + label for label in labels]
    if new_flat == flat and new_tree == tree:
        return False
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        if target.exists():
            shutil.copy2(target, temporary)
        else:
            Path(temporary).write_text(_EMPTY_XMP, encoding="utf-8")
        image = pyexiv2.Image(temporary)
        try:
            image.modify_xmp({"Xmp.dc.subject": new_flat, "Xmp.lr.hierarchicalSubject": new_tree})
        finally:
            image.close()
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return True


def _listed(value: Any) -> list[str]:
    """An XMP value as a list of strings (one keyword may come back as a plain string)."""
    return [] if not value else [value] if isinstance(value, str) else [str(v) for v in value]


def _read_xmp(path: Path) -> dict[str, Any]:
    import pyexiv2

    image = pyexiv2.Image(str(path))
    try:
        return dict(image.read_xmp())
    finally:
        image.close()


def export_folders(rows: Iterable[dict[str, Any]], out: str | os.PathLike[str], *, copy: bool = False,
                   min_score: float | None = None) -> ExportReport:  # fmt: skip
    """The ImageFolder layout of the results under ``out``: links (or copies) of each image in its label's folder."""
    root = Path(out)
    report = ExportReport()
    taken: dict[Path, str] = {}  # a folder entry -> the image it stands for (two images, one name: the second renamed)
    for image, labels in _usable(rows, min_score, report):
        source = Path(image)
        for label in labels or [NONE_FOLDER]:
            folder = root / _folder_name(label)
            entry = _entry(folder, source, taken)
            try:
                if entry.exists() or entry.is_symlink():
                    if (entry.is_symlink() and Path(os.readlink(entry)) == source.resolve()) or \
                            (not entry.is_symlink() and copy):  # fmt: skip
                        report.unchanged.append(str(entry))
                        continue
                    entry.unlink()
                folder.mkdir(parents=True, exist_ok=True)
                if copy:
                    shutil.copy2(source, entry)
                else:
                    entry.symlink_to(source.resolve())
            except OSError as exc:
                report.failed.append((image, f"{entry}: {exc}"))
                continue
            report.written.append(str(entry))
    return report


def _folder_name(label: str) -> str:
    """A label as one folder name: no path separators, no leading dots."""
    name = label.replace(os.sep, "_").replace("/", "_").replace("\\", "_").strip().lstrip(".")
    return name or "_"


def _entry(folder: Path, source: Path, taken: dict[Path, str]) -> Path:
    """The image's name in ``folder``; a different image already there under that name gets a numbered name."""
    entry = folder / source.name
    number = 1
    while taken.get(entry, str(source)) != str(source):
        number += 1
        entry = folder / f"{source.stem}-{number}{source.suffix}"
    taken[entry] = str(source)
    return entry
