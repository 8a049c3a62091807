"""EmbeddingStore: content-keyed, incremental, consistent on disk, refuses other models, safe for readers."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from clipzero.encoder import Encoder
from clipzero.errors import StoreError
from clipzero.store import EmbeddingStore
from tests.conftest import write_image


def _folder(tmp_path: Path, n: int = 6) -> list[Path]:
    folder = tmp_path / "pics"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    return [
        write_image(folder / f"img{i}.png", tuple(int(c) for c in rng.integers(0, 255, 3)), size=(40 + i, 36))
        for i in range(n)
    ]


def test_add_search_and_reopen(tiny_encoder: Encoder, tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    store = EmbeddingStore(tmp_path / "store", tiny_encoder)
    report = store.add(paths)
    assert (report.encoded, report.reused, report.unchanged, report.failed) == (6, 0, 0, [])
    assert len(store) == 6
    own = store.get(paths[2])
    assert own is not None and own.paths == (str(paths[2]),) and own.vector.shape == (32,)
    hits = store.search(own.vector, top_k=3)
    assert hits[0].path == str(paths[2]) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score >= hits[2].score
    by_image = store.search(paths[4], top_k=1)  # a Path is an image query (a str is always text)
    assert by_image[0].path == str(paths[4])
    store.check()
    store.close()
    reopened = EmbeddingStore(tmp_path / "store", tiny_encoder)
    assert len(reopened) == 6 and reopened.search(own.vector, top_k=1)[0].sha256 == own.sha256
    reopened.check()


def test_incremental_and_content_dedup(tiny_encoder: Encoder, tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    store = EmbeddingStore(tmp_path / "store", tiny_encoder)
    store.add(paths)
    before = tiny_encoder.images_encoded
    again = store.add(paths)
    assert again.unchanged == 6 and tiny_encoder.images_encoded == before  # nothing re-read or re-encoded
    twin = tmp_path / "pics" / "copy-of-img0.png"
    shutil.copy(paths[0], twin)
    write_image(paths[1], (1, 2, 3), size=(50, 50))  # changed content under a known path
    new = tmp_path / "pics" / "new.png"
    write_image(new, (9, 200, 9))
    report = store.add([*paths, twin, new])
    assert (report.encoded, report.reused, report.unchanged) == (2, 1, 5)
    assert tiny_encoder.images_encoded == before + 2  # only the changed and the new file
    assert len(store) == 7  # 6 + new; the old content of img1 is gone with its only path
    assert set(store.get(twin).paths) == {str(paths[0]), str(twin)}  # type: ignore[union-attr]
    store.check()


def test_bad_files_reported_not_raised(tiny_encoder: Encoder, tmp_path: Path) -> None:
    paths = _folder(tmp_path, 3)
    broken = tmp_path / "pics" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n nope")
    report = EmbeddingStore(tmp_path / "store", tiny_encoder).add([*paths, broken, tmp_path / "missing.png"])
    assert report.encoded == 3 and report.total == 5
    reasons = dict(report.failed)
    assert set(reasons) == {str(broken), str(tmp_path / "missing.png")}


def test_other_model_refused(tiny_encoder: Encoder, tiny_arch: str, tmp_path: Path) -> None:
    import open_clip

    EmbeddingStore(tmp_path / "store", tiny_encoder).add(_folder(tmp_path, 2))
    other = Encoder.from_open_clip(
        open_clip.create_model(tiny_arch), tiny_encoder.preprocess, tiny_encoder.tokenizer, id="someone-else"
    )
    with pytest.raises(StoreError, match="holds embeddings of model"):
        EmbeddingStore(tmp_path / "store", other)


def test_newer_schema_refused(tiny_encoder: Encoder, tmp_path: Path) -> None:
    EmbeddingStore(tmp_path / "store", tiny_encoder).close()
    with sqlite3.connect(tmp_path / "store" / "store.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        EmbeddingStore(tmp_path / "store", tiny_encoder)


def test_damaged_or_lagging_index_is_repaired(tiny_encoder: Encoder, tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    store = EmbeddingStore(tmp_path / "store", tiny_encoder)
    store.add(paths[:3])
    saved = (tmp_path / "store" / "index.faiss").read_bytes()
    store.add(paths[3:])
    store.close()
    (tmp_path / "store" / "index.faiss").write_bytes(saved)  # as if killed before the index was saved
    lagging = EmbeddingStore(tmp_path / "store", tiny_encoder)
    lagging.check()
    assert len(lagging.search(lagging.get(paths[5]).vector, top_k=6)) == 6  # type: ignore[union-attr]
    lagging.close()
    (tmp_path / "store" / "index.faiss").write_bytes(b"garbage")
    EmbeddingStore(tmp_path / "store", tiny_encoder).check()


def test_one_writer_at_a_time(tiny_encoder: Encoder, tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", tiny_encoder)
    other = EmbeddingStore(tmp_path / "store", tiny_encoder)
    with store.writer(), pytest.raises(StoreError, match="being written by another process"):
        other.add(_folder(tmp_path, 1))


def test_prune_and_remove(tiny_encoder: Encoder, tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    store = EmbeddingStore(tmp_path / "store", tiny_encoder)
    store.add(paths)
    paths[0].unlink()
    assert store.prune() == 1 and len(store) == 5 and store.get(paths[0]) is None
    assert store.remove([paths[1]]) == 1 and len(store) == 4
    store.check()
    assert all(hit.path not in (str(paths[0]), str(paths[1])) for hit in store.search(np.ones(32) / 32**0.5, 10))


def test_opening_without_a_model(tiny_encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        EmbeddingStore(tmp_path / "nothing")
    paths = _folder(tmp_path, 2)
    EmbeddingStore(tmp_path / "store", tiny_encoder).add(paths)
    reader = EmbeddingStore(tmp_path / "store")
    assert reader.model_id == tiny_encoder.id and len(reader) == 2
    with pytest.raises(StoreError, match="needs the store's model"):
        reader.search("a red circle")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_agree_with_exact(tmp_path: Path, kind: str) -> None:
    """Clustered vectors (not uniform noise): approximate top-10 must recover most of the exact top-10."""
    from clipzero.store.index_kinds import IndexSpec, build_index

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 64))
    data = centres[rng.integers(0, 40, 4000)] + 0.35 * rng.normal(size=(4000, 64))
    data = np.ascontiguousarray(data / np.linalg.norm(data, axis=1, keepdims=True), dtype=np.float32)
    ids = np.arange(1, 4001, dtype=np.int64)
    exact = build_index(IndexSpec("flat"), 64, 4000, None)
    approx = build_index(IndexSpec(kind), 64, 4000, data)
    exact.add_with_ids(data, ids)
    approx.add_with_ids(data, ids)
    queries = data[:200] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)
    truth = exact.search(queries, 10)[1]
    found = approx.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall >= 0.95, recall


def _clustered(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    centres = rng.normal(size=(60, dim))
    data = centres[rng.integers(0, 60, n)] + 0.5 * rng.normal(size=(n, dim))
    return np.ascontiguousarray(data / np.linalg.norm(data, axis=1, keepdims=True), dtype=np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_search_settings_are_tuned_for_recall_and_exact_is_brute_force(tiny_encoder: Encoder, tmp_path: Path,
                                                                       kind: str) -> None:  # fmt: skip
    """The store picks the cheapest setting that reaches recall@10 0.95 on its own probe queries, says so in
    info(), keeps it across reopening; fresh queries reach about that recall; exact search is brute force."""
    from clipzero.store import EmbeddingStore
    from clipzero.store.index_kinds import search_index
    from clipzero.store.records import Record

    rng = np.random.default_rng(5)
    dim = tiny_encoder.embed_dim
    data = _clustered(rng, 6000, dim)
    with EmbeddingStore(tmp_path / "s", tiny_encoder, index=kind) as store:
        with store.writer():
            store.put([Record(f"{i}.png", f"{i:064x}", 1, 1, 1, data[i]) for i in range(len(data))])
            store.save()
        tuned = store.info()["index"]["tuned"]
    assert tuned["setting"] == ("ef_search" if kind == "hnsw" else "nprobe") and tuned["recall_at_10"] >= 0.95
    with EmbeddingStore(tmp_path / "s") as store:
        assert store.info()["index"]["tuned"] == tuned  # kept with the index
        described = store.info()["index"]
        assert described.get("nprobe", described.get("ef_search")) == tuned["value"]
        noise = np.random.default_rng(9).normal(size=(200, dim)) / np.sqrt(dim)
        queries = data[7::30][:200] + 1.2 * noise  # near stored images (cosine about 0.65), not the tuning probes
        queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True), dtype=np.float32)
        truth = np.argsort(-(queries @ data.T), axis=1)[:, :10] + 1  # store ids count from 1, in insertion order
        found = [[int(i) for i in search_index(store._index, q[None], 10)[1][0]] for q in queries]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), found)])
        assert recall >= 0.9, recall
        exact = [[int(i) for i in search_index(store._index, q[None], 10, exact=True)[1][0]] for q in queries[:20]]
        assert exact == truth[:20].tolist()
        hits = store.search(queries[0], top_k=5, exact=True)
        assert [Path(h.path).name for h in hits] == [f"{i - 1}.png" for i in truth[0][:5]]
