"""Result files for batch tagging: JSONL, CSV and Parquet, appended as results come, resumable.

Every format holds the same rows: ``image`` (the path as given), ``sha256``, ``label`` (the top label, or empty
when below the threshold), ``score`` (its probability) and ``predictions`` (the top-k labels with ``score`` and
``similarity``; a JSON string in CSV). Rows are flushed and fsynced batch by batch. On a new run with the same
output, the rows already there are read back and their images skipped; a last line cut short by a crash is
dropped. Parquet cannot be appended to, so rows go to ``<out>.partial.jsonl`` during the run and become
``<out>`` (written atomically) when the run completes. Failures go to ``<out>.errors.jsonl`` (``image``,
``error``), rewritten each run, since failed images are tried again.

CSV cells are inert in a spreadsheet: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return (a formula to Excel, LibreOffice and Google Sheets), or with ``'``, gets a ``'`` in front (the OWASP rule),
and :func:`read_results` takes it off again, so names and labels read back exactly as written.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError

__all__ = [
    "FORMATS",
    "SCORE_DECIMALS",
    "ResultWriter",
    "csv_cell",
    "format_for",
    "from_csv_cell",
    "join_labels",
    "side_files",
    "split_labels",
]

FORMATS = ("jsonl", "csv", "parquet")
_CSV_FIELDS = ["image", "sha256", "label", "score", "predictions"]
_LONG_FIELDS = ["image", "sha256", "label", "score", "similarity", "region"]
#: A text cell starting with one of these would be run by a spreadsheet (or is our own escape).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: Any) -> Any:
    """A value for a CSV cell that a spreadsheet shows as text, never runs (numbers and None pass unchanged)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def from_csv_cell(value: str) -> str:
    """The text :func:`csv_cell` was given."""
    return value[1:] if value.startswith("'") else value


def format_for(path: Path, explicit: str | None = None) -> str:
    """The output format: ``explicit``, else from the file ending (``.jsonl``/``.json``, ``.csv``, ``.parquet``)."""
    if explicit:
        if explicit not in FORMATS:
            raise ConfigError(f"unknown output format {explicit!r}: use {', '.join(FORMATS)}")
        return explicit
    suffix = path.suffix.lower()
    for fmt, endings in (("jsonl", (".jsonl", ".json", ".ndjson")), ("csv", (".csv",)), ("parquet", (".parquet",))):
        if suffix in endings:
            return fmt
    raise ConfigError(f"cannot tell the format of {path} from its ending: pass --format jsonl, csv or parquet")


#: Decimals of the scores and similarities written to result files: the model computes them in float32 (about seven
#: significant digits), so more digits would only show the float's binary expansion.
SCORE_DECIMALS = 6


def _rounded(prediction: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, SCORE_DECIMALS) if isinstance(value, float) else value
            for key, value in prediction.items()}  # fmt: skip


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    predictions = [_rounded(p) for p in row["predictions"]]
    flat = {
        "image": row["image"],
        "sha256": row["sha256"],
        "label": row["label"],
        "score": predictions[0]["score"] if predictions else None,
        "predictions": predictions,
    }
    if "labels" in row:  # multi-label: every label that applies
        flat["labels"] = [_rounded(t) for t in row["labels"]]
    return flat


def join_labels(labels: list[str]) -> str:
    """Labels as one CSV cell: joined by ``;``, a ``;`` or ``\\`` inside a label escaped with ``\\``."""
    return ";".join(label.replace("\\", "\\\\").replace(";", "\\;") for label in labels)


def split_labels(cell: str) -> list[str]:
    """The labels :func:`join_labels` joined."""
    labels: list[str] = []
    current: list[str] = []
    escaped = False
    for char in cell:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            labels.append("".join(current))
            current = []
        else:
            current.append(char)
    return [*labels, "".join(current)] if cell else []


def _complete_lines(data: bytes) -> bytes:
    """``data`` up to its last newline: a last line a crash cut short (no newline after it) is not a row."""
    return data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]


def _truncate_partial_line(path: Path) -> None:
    """Drop, on disk, a last line that a crash cut short, so that appending starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    cut = len(_complete_lines(path.read_bytes()))
    if cut != path.stat().st_size:
        with _open(path, "r+b", follow_links=False) as handle:
            handle.truncate(cut)


def _read_text(path: Path) -> str:
    """The complete lines of ``path`` (a run still writing it, or killed, may have left half a row at the end)."""
    return _complete_lines(path.read_bytes()).decode("utf-8") if path.exists() else ""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _read_text(path).split("\n") if line.strip()]


def side_files(path: str | os.PathLike[str], fmt: str | None = None) -> list[Path]:
    """Every file a :class:`ResultWriter` for ``path`` may write: the rows, the errors, the lock, Parquet's
    partial rows and its temporary file (a server checks each against its roots before writing)."""
    path = Path(path)
    files = [path, path.with_name(path.name + ".errors.jsonl"), path.with_name(path.name + ".lock")]
    if format_for(path, fmt) == "parquet":
        files += [path.with_name(path.name + ".partial.jsonl"), path.with_name(f".{path.name}.tmp")]
    return files


def _open(path: Path, mode: str, follow_links: bool) -> IO[Any]:
    """``open(path, mode)`` for ``a``, ``w``, ``r+b`` and ``a+``; with ``follow_links=False`` a link is refused
    (O_NOFOLLOW, on the descriptor itself: no check-then-open race) and so is anything but a regular file."""
    flags = {"a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "r+b": os.O_RDWR, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND}[mode]  # fmt: skip
    if not follow_links:
        flags |= os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if not follow_links and (os.path.islink(path) or exc.errno == 40):  # ELOOP: the last part is a link
            raise ConfigError(f"{path} is a symbolic link: refused (result files are written only as themselves)"
                              ) from exc  # fmt: skip
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path} is not a regular file: refused")
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="" if mode != "w" else None)


def _lock(path: Path, follow_links: bool) -> IO[Any]:
    """The exclusive lock of one result file (``<out>.lock``, across processes), taken at once or ConfigError."""
    while True:
        handle = _open(path, "a+", follow_links)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ConfigError(f"{path.name[: -len('.lock')]} is being written by another clipzero run (its lock "
                              f"file {path} is held): wait for that run to finish, or choose another --out"
                              ) from exc  # fmt: skip
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # the holder removed it while we opened it: take the new one


class ResultWriter:
    """Appends tagging results to ``path`` in ``fmt``; ``done`` holds the images already written.

    One writer per result file at a time, across processes: a lock file (``<out>.lock``, removed on close) is taken
    first, and a second writer is refused instead of doubling the rows.

    Args:
        follow_links: False for a server writing where a client said: every file is opened without following a
            link (O_NOFOLLOW) and must be a regular file.

    Raises:
        ConfigError: another run holds the lock; the existing output cannot be read back (not this format, or
            damaged beyond the last line); a link, with ``follow_links=False``.
    """

    def __init__(self, path: str | os.PathLike[str], fmt: str | None = None, *, follow_links: bool = True,
                 multi_label: bool = False, long: bool = False) -> None:  # fmt: skip
        self.path = Path(path)
        self.format = format_for(self.path, fmt)
        self.follow_links = follow_links
        self.multi_label = multi_label
        self.long = long  # multi-label CSV, one row per image and label that applies
        if long and (self.format != "csv" or not multi_label):
            raise ConfigError("the long layout (one row per image and label) is for multi-label CSV output")
        self.fields = _LONG_FIELDS if long else [*_CSV_FIELDS, "labels"] if multi_label else _CSV_FIELDS
        self.rows_path = (
            self.path.with_name(self.path.name + ".partial.jsonl") if self.format == "parquet" else self.path
        )
        self.errors_path = self.path.with_name(self.path.name + ".errors.jsonl")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not follow_links:
            for side in side_files(self.path, self.format):
                if side.is_symlink():
                    raise ConfigError(f"{side} is a symbolic link: refused (result files are written only as "
                                      "themselves)")  # fmt: skip
        self._lock = _lock(self.lock_path, follow_links)
        try:
            self._open_files()
        except BaseException:
            self._release()
            raise

    def _open_files(self) -> None:
        self.done: set[str] = set()
        try:
            self._resume()
        except (ValueError, KeyError, OSError, csv.Error) as exc:
            raise ConfigError(
                f"cannot resume from {self.path}: it is not a readable {self.format} result file "
                f"({exc}); choose another --out"
            ) from exc
        new_csv = self.format == "csv" and (not self.path.exists() or self.path.stat().st_size == 0)
        self._rows = _open(self.rows_path, "a", self.follow_links)
        self._csv = csv.DictWriter(self._rows, fieldnames=self.fields) if self.format == "csv" else None
        if self._csv is not None and new_csv:
            self._csv.writeheader()
        self._errors = _open(self.errors_path, "w", self.follow_links)

    def _release(self) -> None:
        if self._lock.closed:
            return
        try:
            os.unlink(self.lock_path)  # while held: the next writer makes a new one
        except OSError:
            pass
        self._lock.close()

    def _resume(self) -> None:
        if self.format == "parquet":
            if self.path.exists() and not self.rows_path.exists():
                import pyarrow.parquet as pq

                rows = pq.read_table(self.path).to_pylist()
                with open(self.rows_path, "w", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            _truncate_partial_line(self.rows_path)
            self.done = {r["image"] for r in _read_jsonl(self.rows_path)}
        elif self.format == "jsonl":
            _truncate_partial_line(self.path)
            self.done = {r["image"] for r in _read_jsonl(self.path)}
        elif self.path.exists():
            _truncate_partial_line(self.path)
            with open(self.path, encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames and reader.fieldnames != self.fields:
                    multi = "labels" in reader.fieldnames
                    raise ValueError(f"unexpected columns {reader.fieldnames}" + (
                        f" (it was written {'with' if multi else 'without'} --multi-label)"
                        if set(reader.fieldnames) ^ set(self.fields) == {"labels"} else ""))  # fmt: skip
                self.done = {from_csv_cell(row["image"]) for row in reader}

    def write(self, row: dict[str, Any]) -> None:
        flat = _flat_row(row)
        for extra in ("rerank", "rejection", "video"):  # reasoning, rejection, a video's summary: in JSON lines
            if self.format == "jsonl" and extra in row:
                flat[extra] = row[extra]
        if self.multi_label and "labels" not in flat:
            flat["labels"] = []
        if self._csv is not None and self.long:  # an image that got no label keeps one row, its label empty
            for tag in flat["labels"] or [{"label": None, "score": None, "similarity": None, "region": None}]:
                region = " ".join(map(str, tag["region"])) if tag["region"] else None
                self._csv.writerow({"image": csv_cell(flat["image"]), "sha256": flat["sha256"],
                                    "label": csv_cell(tag["label"]), "score": tag["score"],
                                    "similarity": tag["similarity"], "region": region})  # fmt: skip
        elif self._csv is not None:
            cells = {key: csv_cell(value) for key, value in flat.items() if key != "labels"}
            if self.multi_label:
                cells["labels"] = csv_cell(join_labels([t["label"] for t in flat["labels"]]))
            self._csv.writerow({**cells, "predictions": json.dumps(flat["predictions"], ensure_ascii=False)})
        else:
            self._rows.write(json.dumps(flat, ensure_ascii=False) + "\n")
        self.done.add(flat["image"])

    def write_error(self, row: dict[str, str]) -> None:
        self._errors.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Make what was written durable (called after every batch)."""
        for handle in (self._rows, self._errors):
            handle.flush()
            os.fsync(handle.fileno())

    def close(self, completed: bool = True) -> None:
        """Close the files (again: nothing); for Parquet, a completed run turns the partial rows into the final file."""
        if self._rows.closed:
            return
        try:
            self.flush()
            self._rows.close()
            self._errors.close()
            if self.format == "parquet" and completed:
                self._finish_parquet()
        finally:
            self._release()

    def _finish_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = _read_jsonl(self.rows_path)
        table = pa.Table.from_pylist(rows, schema=_parquet_schema(self.multi_label))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if tmp.is_symlink():
            tmp.unlink()  # a link left where the temporary file goes is removed, never written through
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self.rows_path.unlink()


def _parquet_schema(multi_label: bool = False) -> Any:
    import pyarrow as pa

    prediction = pa.struct([("label", pa.string()), ("score", pa.float64()), ("similarity", pa.float64())])
    fields = [
        ("image", pa.string()),
        ("sha256", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("predictions", pa.list_(prediction)),
    ]
    if multi_label:
        tag = pa.struct([("label", pa.string()), ("score", pa.float64()), ("similarity", pa.float64()),
                         ("region", pa.list_(pa.float64()))])  # fmt: skip
        fields.append(("labels", pa.list_(tag)))
    return pa.schema(fields)


def read_results(path: str | os.PathLike[str], fmt: str | None = None) -> list[dict[str, Any]]:
    """Read a result file back into rows (``predictions`` decoded in every format).

    A file that a run is still writing, or that a killed run left, is read up to its last complete row.
    """
    path = Path(path)
    kind = format_for(path, fmt)
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    if not path.exists():
        raise FileNotFoundError(path)
    rows = list(csv.DictReader(io.StringIO(_read_text(path), newline="")))
    if rows and "region" in rows[0]:
        return _read_long(rows)
    for row in rows:
        row["predictions"] = json.loads(row["predictions"])
        row["image"] = from_csv_cell(row["image"])
        row["label"] = from_csv_cell(row["label"]) or None
        row["score"] = float(row["score"]) if row["score"] else None
        if "labels" in row:  # multi-label CSV: the names (their scores are in predictions)
            row["labels"] = [{"label": label} for label in split_labels(from_csv_cell(row["labels"]))]
    return rows


def _read_long(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows of the long multi-label CSV, one per image again, with its ``labels``."""
    images: dict[str, dict[str, Any]] = {}
    for row in rows:
        image = from_csv_cell(row["image"])
        found = images.setdefault(image, {"image": image, "sha256": row["sha256"], "labels": []})
        if row["label"]:
            found["labels"].append({"label": from_csv_cell(row["label"]), "score": float(row["score"]),
                                    "similarity": float(row["similarity"]),
                                    "region": [float(x) for x in row["region"].split()]})  # fmt: skip
    for found in images.values():
        found["label"] = found["labels"][0]["label"] if found["labels"] else None
    return list(images.values())
