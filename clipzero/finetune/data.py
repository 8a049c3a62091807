"""Labelled image sets for adaptation and evaluation: local folder trees and Hugging Face hub datasets.

A local tree ``ROOT/<class>/*`` (or ``ROOT/train/<class>/*`` with ``val/`` or ``test/`` beside it) is read through
the ``datasets`` library's imagefolder builder, which works offline. A hub dataset id (``ORG/NAME`` or
``ORG/NAME:CONFIG``) is downloaded once and written out as such a tree under ``CLIPZERO_HOME/datasets``, so from
then on it is a local folder: it loads with no network, and its files are keyed in embedding stores like any
others. ImageNet-style WordNet-id folder names (``n01440764``) are shown as readable class names (``tench``).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DatasetError

__all__ = [
    "Example",
    "LabeledSet",
    "evaluation_splits",
    "few_shot",
    "load_labeled",
    "readable_class_name",
]

_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_WNID = re.compile(r"^n\d{8}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")


@dataclass(frozen=True)
class Example:
    """One labelled image: its file and its class index."""

    path: str
    label: int


@dataclass
class LabeledSet:
    """A labelled image set: readable class names and its splits (``train``, ``validation``, ``test``)."""

    name: str
    classes: list[str]
    splits: dict[str, list[Example]] = field(default_factory=dict)
    folder_names: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise DatasetError(f"dataset {self.name!r} has no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {len(items)}" for name, items in self.splits.items())
        return f"{self.name}: {len(self.classes)} classes; {sizes}"


# -- class names -------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _wordnet_names() -> dict[str, str]:
    """WordNet id -> readable name: the CLIP ImageNet-1k names where the id is one of those 1000, else the first
    WordNet lemma (ImageNet-21k). Both lists come with open_clip and its dependency timm."""
    names: dict[str, str] = {}
    try:
        from importlib.resources import files

        info = files("timm") / "data" / "_info"
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines():
            wnid, _, lemmas = line.partition("\t")
            if lemmas:
                names[wnid] = lemmas.split(",")[0].strip()
        wnids_1k = (info / "imagenet_synsets.txt").read_text().split()
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        if len(wnids_1k) == len(IMAGENET_CLASSNAMES):
            names.update(zip(wnids_1k, IMAGENET_CLASSNAMES))
    except (ImportError, OSError):  # the lists are a convenience; folder names still work without them
        pass
    return names


def readable_class_name(folder: str) -> str:
    """A class folder's name as a label: WordNet ids become words, underscores become spaces."""
    if _WNID.match(folder):
        return _wordnet_names().get(folder, folder)
    return folder.replace("_", " ").strip()


# -- loading ---------------------------------------------------------------------------------------------------
def load_labeled(spec: str | os.PathLike[str], *, refresh: bool = False) -> LabeledSet:
    """Load a labelled image set from a local folder tree or a hub dataset id.

    Args:
        spec: a folder (``ROOT/<class>/*``, or split folders ``train``/``val``/``test`` each holding class
            folders), or a hub dataset ``ORG/NAME`` or ``ORG/NAME:CONFIG`` (fetched once, then read locally).
        refresh: fetch a hub dataset again even if it was written out before.

    Raises:
        DatasetError: missing folder, no images, or a hub dataset that is not here and cannot be fetched.
    """
    text = os.fspath(spec)
    folder = Path(text).expanduser()
    if folder.is_dir():
        return _load_folder(folder, name=text)
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return _load_folder(_hub_dataset_folder(text, refresh=refresh), name=text)
    raise DatasetError(f"dataset {text!r}: no such folder, and not a hub dataset id (ORG/NAME or ORG/NAME:CONFIG)")


def _load_folder(folder: Path, name: str) -> LabeledSet:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise DatasetError("loading datasets needs the finetune extra: pip install 'clipzero[finetune]'") from exc
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(folder))
    except Exception as exc:  # no images, unreadable tree
        raise DatasetError(f"dataset {name!r}: cannot read {folder} as class folders: {exc}") from exc
    label_names: list[str] | None = None
    splits: dict[str, list[Example]] = {}
    for split_name, ds in loaded.items():
        if "label" not in ds.features:
            raise DatasetError(
                f"dataset {name!r}: images in {folder} are not in class folders (expected ROOT/<class>/<image>)"
            )
        names = list(ds.features["label"].names)
        if label_names is None:
            label_names = names
        elif names != label_names:
            raise DatasetError(f"dataset {name!r}: split {split_name!r} has other classes than the first split")
        column = ds.cast_column("image", datasets.Image(decode=False))
        splits[_SPLIT_NAMES.get(split_name, split_name)] = [
            Example(row["image"]["path"], int(row["label"])) for row in column
        ]
    if not label_names or not any(splits.values()):
        raise DatasetError(f"dataset {name!r}: no images found in {folder}")
    meta = folder / "clipzero-dataset.json"  # written out from the hub: the original class names
    shown = json.loads(meta.read_text()).get("classes") if meta.is_file() else None
    classes = shown if shown and len(shown) == len(label_names) else [readable_class_name(n) for n in label_names]
    return LabeledSet(name=name, classes=classes, splits=splits, folder_names=label_names)


def _datasets_home() -> Path:
    from ..config import home

    return home() / "datasets"


def _hub_dataset_folder(spec: str, refresh: bool = False) -> Path:
    """The local copy of a hub dataset, written out on first use."""
    from ..hub import hub_endpoint, hub_offline, probe

    repo, _, config = spec.partition(":")
    folder = _datasets_home() / re.sub(r"[^\w.-]+", "__", spec)
    if (folder / "clipzero-dataset.json").is_file() and not refresh:
        return folder
    fixes = (
        "To fix: run once with internet access (the copy is then reused offline), set HF_ENDPOINT to a mirror you "
        "can reach, or pass a local folder of class folders instead."
    )
    if hub_offline():
        raise DatasetError(
            f"dataset {spec!r} is not available: no local copy at {folder}, and HF_HUB_OFFLINE is set. {fixes}"
        )
    endpoint = hub_endpoint()
    problem = probe(endpoint)
    if problem is not None:
        raise DatasetError(
            f"dataset {spec!r} is not available offline: no local copy at {folder}, and {endpoint} cannot be "
            f"reached ({problem}). {fixes}"
        )
    import datasets

    try:
        loaded = datasets.load_dataset(repo, config or None)
    except Exception as exc:
        raise DatasetError(f"dataset {spec!r}: could not load it from {endpoint}: {exc}") from exc
    export_dataset(loaded, folder)
    return folder


def export_dataset(loaded: Any, folder: Path) -> None:
    """Write a ``datasets`` DatasetDict with an image column and a class-label column as class folders.

    The files keep their original bytes where the dataset has them (PNG otherwise); a marker file written last
    records the class names, so an interrupted export is redone rather than used.
    """
    import datasets

    marker = folder / "clipzero-dataset.json"
    marker.unlink(missing_ok=True)
    classes: list[str] | None = None
    for split_name, ds in loaded.items():
        features = ds.features
        image_column = next((k for k, v in features.items() if isinstance(v, datasets.Image)), None)
        label_column = next((k for k, v in features.items() if isinstance(v, datasets.ClassLabel)), None)
        if image_column is None or label_column is None:
            raise DatasetError(
                f"dataset split {split_name!r} needs an image column and a class-label column; it has {dict(features)}"
            )
        names = list(features[label_column].names)
        classes = classes or names
        folders = [re.sub(r"[^\w.-]+", "_", n) or f"class{i}" for i, n in enumerate(names)]
        raw = ds.cast_column(image_column, datasets.Image(decode=False))
        split_dir = folder / {"validation": "val"}.get(split_name, split_name)
        for index, row in enumerate(raw):
            image, label = row[image_column], int(row[label_column])
            data = image.get("bytes")
            if data is None and image.get("path"):
                data = Path(image["path"]).read_bytes()
            suffix = Path(image.get("path") or "").suffix.lower() or _sniff_suffix(data or b"")
            target = split_dir / folders[label] / f"{index:07d}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data or b"")
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"classes": [readable_class_name(c) for c in classes or []]}, ensure_ascii=False))


def _sniff_suffix(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


# -- sampling ----------------------------------------------------------------------------------------------------
def few_shot(examples: list[Example], shots: int, seed: int = 0) -> list[Example]:
    """``shots`` examples of each class, chosen reproducibly from ``seed`` (all of a class that has fewer)."""
    if shots < 1:
        raise DatasetError(f"shots must be at least 1, got {shots}")
    by_class: dict[int, list[Example]] = defaultdict(list)
    for example in sorted(examples, key=lambda e: (e.label, e.path)):
        by_class[example.label].append(example)
    rng = random.Random(seed)
    chosen: list[Example] = []
    for label in sorted(by_class):
        items = by_class[label]
        chosen.extend(items if len(items) <= shots else rng.sample(items, shots))
    return chosen


@dataclass
class EvaluationSplits:
    """Disjoint image sets for one adaptation run: ``shots`` to learn from, ``select`` to choose
    hyperparameters on, ``test`` to report on. No image is in two of them."""

    shots: list[Example]
    select: list[Example]
    test: list[Example]
    test_source: str


def evaluation_splits(data: LabeledSet, shots: int, seed: int = 0) -> EvaluationSplits:
    """Few-shot training images from ``train``, a disjoint selection set, and a test set never trained on.

    The test set is the ``test`` split, else ``validation``; with only a ``train`` split, what the shots and the
    selection set leave of it. The selection set is up to ``shots`` more images per class from ``train`` (else
    from ``validation`` when that is not the test set).
    """
    train = data.splits.get("train") or next(iter(data.splits.values()))
    picked = few_shot(train, shots, seed)
    taken = {e.path for e in picked}
    rest = [e for e in train if e.path not in taken]
    select = few_shot(rest, shots, seed + 1) if rest else []
    taken |= {e.path for e in select}
    if "test" in data.splits:
        test, source = data.splits["test"], "test"
    elif "validation" in data.splits:
        test, source = data.splits["validation"], "validation"
    else:
        test, source = [e for e in train if e.path not in taken], "rest of train"
    if not select and "validation" in data.splits and source != "validation":
        select = few_shot(data.splits["validation"], shots, seed + 1)
    if not test:
        raise DatasetError(f"dataset {data.name!r}: no images left to test on after taking {shots} shots per class")
    overlap = taken & {e.path for e in test}
    if overlap:
        raise DatasetError(f"dataset {data.name!r}: {len(overlap)} test images are also training images")
    return EvaluationSplits(picked, select, test, source)
