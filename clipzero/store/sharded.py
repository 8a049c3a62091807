"""IVF indexes built from embedding shards, merged on disk, and served memory-mapped.

For collections that outgrow one machine's memory: shards of embeddings (Parquet files with ``path`` and
``vector`` columns, as ``--engine ray`` writes them, one per worker batch) become one FAISS IVF index without ever
holding all vectors at once:

1. **train** the coarse quantizer (and the product quantizer, for IVF-PQ) on a sample drawn across the shards;
2. **fill** one small index per shard from that trained, empty index, and write it to disk;
3. **merge** the shards' inverted lists into one ``.ivfdata`` file on disk (FAISS OnDiskInvertedLists);
4. **serve**: the index file is small (the quantizers); its lists stay in the ``.ivfdata`` file, memory-mapped
   read-only, paged in as queries touch them. The index records the absolute path of that file, so keep the two
   together where they were built (or rebuild after moving them).

Flat lists keep exact vectors (the best recall, ``4 * dim`` bytes per image); PQ lists keep ``m`` bytes per image
(``m = dim / 4`` by default: 16x smaller) and are chosen when flat lists would exceed the memory budget. The ids
are row numbers in the order shards were given; ``<index>.paths.sqlite`` maps them back to paths.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import StoreError

__all__ = ["ShardWriter", "ShardedIndex", "build_from_shards", "choose_layout", "in_shards", "read_shard"]


@dataclass(frozen=True)
class Layout:
    """What to build: IVF with ``nlist`` lists, and flat lists or PQ with ``m`` bytes per vector."""

    nlist: int
    pq_m: int | None

    def factory(self, dim: int) -> str:
        return f"IVF{self.nlist},PQ{self.pq_m}" if self.pq_m else f"IVF{self.nlist},Flat"

    def bytes_per_vector(self, dim: int) -> int:
        return (self.pq_m or 4 * dim) + 8  # codes plus the 8-byte id


def choose_layout(n: int, dim: int, memory_budget_gb: float = 8.0) -> Layout:
    """nlist about 4 sqrt(n) (at least 1, at most n / 39 so every list trains), flat lists if they fit the
    budget, else PQ with dim / 4 bytes per vector."""
    nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    flat_bytes = n * (4 * dim + 8)
    if flat_bytes <= memory_budget_gb * 1e9:
        return Layout(nlist, None)
    m = max(1, dim // 4)
    while dim % m:
        m -= 1
    return Layout(nlist, m)


def read_shard(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """(paths, float32 vectors) of one Parquet shard."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(path), columns=["path", "vector"])
    paths = table.column("path").to_pylist()
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    return paths, vectors.reshape(len(paths), -1) if len(paths) else np.zeros((0, 0), np.float32)


def _sample(shards: Sequence[Path], size: int, seed: int) -> np.ndarray:
    """About ``size`` vectors drawn evenly from every shard (each shard read once)."""
    rng = np.random.default_rng(seed)
    counts = []
    for shard in shards:
        import pyarrow.parquet as pq

        counts.append(pq.ParquetFile(str(shard)).metadata.num_rows)
    total = sum(counts)
    picked = []
    for shard, count in zip(shards, counts):
        if not count:
            continue
        take = min(count, max(1, round(size * count / max(total, 1))))
        _, vectors = read_shard(shard)
        picked.append(vectors[rng.choice(count, take, replace=False)])
    return np.concatenate(picked) if picked else np.zeros((0, 0), np.float32)


def build_from_shards(
    shards: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    memory_budget_gb: float = 8.0,
    layout: Layout | None = None,
    train_size: int = 100_000,
    seed: int = 0,
    trained: Any = None,
) -> dict[str, Any]:
    """Build ``out`` (index), ``out.ivfdata`` (merged lists) and ``out.paths.sqlite`` (id -> path) from shards.

    Args:
        trained: an already trained, empty IVF index to fill (its layout wins); None trains one on a sample.

    Returns:
        A summary: vectors, dim, layout, file sizes.
    """
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    files = [Path(s) for s in shards]
    if not files:
        raise StoreError("no shards given")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    if trained is None:
        sample = _sample(files, train_size, seed)
        if not len(sample):
            raise StoreError("the shards hold no vectors")
        dim = sample.shape[1]
        n_total = 0
        for shard in files:
            import pyarrow.parquet as pq

            n_total += pq.ParquetFile(str(shard)).metadata.num_rows
        chosen = layout or choose_layout(n_total, dim, memory_budget_gb)
        factory = chosen.factory(dim)
        trained = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        trained.train(np.ascontiguousarray(sample))
    else:
        dim, ivf = trained.d, faiss.extract_index_ivf(trained)
        factory = f"IVF{ivf.nlist},given"
        chosen = Layout(ivf.nlist, None)
    trained_file = target.with_suffix(".trained.faiss")
    faiss.write_index(trained, str(trained_file))
    db = _paths_db(target, reset=True)
    shard_files, next_id = [], 0
    for number, shard in enumerate(files):
        paths, vectors = read_shard(shard)
        if not paths:
            continue
        part = faiss.read_index(str(trained_file))
        ids = np.arange(next_id, next_id + len(paths), dtype=np.int64)
        part.add_with_ids(np.ascontiguousarray(vectors), ids)
        part_file = target.with_name(f"{target.name}.part{number:05d}")
        faiss.write_index(part, str(part_file))
        shard_files.append(str(part_file))
        db.executemany("INSERT INTO paths VALUES (?, ?)", zip(ids.tolist(), paths))
        next_id += len(paths)
    db.commit()
    db.close()
    merged = faiss.read_index(str(trained_file))
    ivfdata = target.with_name(target.name + ".ivfdata")
    ivfdata.unlink(missing_ok=True)
    merge_ondisk(merged, shard_files, str(ivfdata))
    faiss.write_index(merged, str(target))
    for part_name in shard_files:
        os.unlink(part_name)
    trained_file.unlink()
    summary = {
        "vectors": next_id,
        "dim": dim,
        "factory": factory,
        "nlist": chosen.nlist,
        "index_bytes": target.stat().st_size,
        "lists_bytes": ivfdata.stat().st_size,
        "shards": len(files),
    }
    target.with_name(target.name + ".json").write_text(json.dumps(summary, indent=1))
    return summary


def _paths_db(index: Path, reset: bool = False) -> sqlite3.Connection:
    path = index.with_name(index.name + ".paths.sqlite")
    if reset:
        path.unlink(missing_ok=True)
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE IF NOT EXISTS paths (id INTEGER PRIMARY KEY, path TEXT)")
    return db


class ShardedIndex:
    """A merged index opened memory-mapped for search (the lists stay on disk until queries touch them)."""

    def __init__(self, path: str | os.PathLike[str], nprobe: int | None = None) -> None:
        import faiss

        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no merged index at {self.path}")
        # the lists are OnDiskInvertedLists: reading the (small) index maps its .ivfdata file, read-only
        self.index = faiss.read_index(str(self.path), faiss.IO_FLAG_READ_ONLY)
        ivf = faiss.extract_index_ivf(self.index)
        ivf.nprobe = nprobe or max(16, ivf.nlist // 4)
        self._db = _paths_db(self.path)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, vectors: np.ndarray, top_k: int = 10) -> list[list[tuple[str, float]]]:
        """For each query vector, the top_k (path, score) pairs, best first."""
        scores, ids = self.index.search(np.ascontiguousarray(np.atleast_2d(vectors), np.float32), top_k)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            wanted = [int(i) for i in row_ids if i >= 0]
            names = dict(self._db.execute(
                f"SELECT id, path FROM paths WHERE id IN ({','.join('?' * len(wanted))})", wanted
            ).fetchall()) if wanted else {}  # fmt: skip
            results.append(
                [(names[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0 and int(i) in names]
            )
        return results

    def close(self) -> None:
        self._db.close()


def iter_shard_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    yield from sorted(Path(folder).glob("*.parquet"))


class ShardWriter:
    """Parquet shards of (path, sha256, vector), one file per ``rows_per_shard`` rows, numbered after any there."""

    def __init__(self, folder: str | os.PathLike[str], rows_per_shard: int = 10_000) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows_per_shard = rows_per_shard
        self.number = len(list(self.folder.glob("part-*.parquet")))
        self._rows: list[dict[str, Any]] = []

    def add(self, path: str, sha256: str, vector: np.ndarray) -> None:
        self._rows.append({"path": path, "sha256": sha256, "vector": vector.astype(np.float32).tolist()})
        if len(self._rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = self.folder / f"part-{self.number:05d}.parquet"
        partial = target.with_suffix(".partial")
        pq.write_table(pa.Table.from_pylist(self._rows), str(partial))
        os.replace(partial, target)  # a shard is there whole or not at all
        self.number += 1
        self._rows = []


_T = TypeVar("_T")


def in_shards(pairs: Iterable[tuple[Any, _T]], writer: ShardWriter | None, rows: int) -> Iterator[list[tuple[Any, _T]]]:
    """Group (embedded item, extra) pairs into lists of ``rows``; each list's vectors are written as a shard (when
    ``writer`` is given) before the list is handed on, so a run killed in between repeats rows in a shard rather
    than losing vectors."""
    pending: list[tuple[Any, _T]] = []

    def flush() -> list[tuple[Any, _T]]:
        if writer is not None:
            for item, _ in pending:
                if item.vector is not None:
                    writer.add(item.name, item.sha256, item.vector)
            writer.flush()
        done = list(pending)
        pending.clear()
        return done

    for pair in pairs:
        pending.append(pair)
        if len(pending) >= rows:
            yield flush()
    if pending:
        yield flush()
