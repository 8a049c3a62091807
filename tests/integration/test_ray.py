"""--engine ray on a local Ray cluster of 2 CPUs, and indexes built from shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_cli import run

COMBOS = [("red", "circle"), ("blue", "star"), ("green", "cross"), ("yellow", "heart"), ("purple", "triangle")]
LABELS = [f"{c} {s}" for c, s in COMBOS]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 200 images, plus files that cannot be read."""
    from clipzero.synthetic.tasks import write_task

    root = tmp_path_factory.mktemp("ray-data")
    write_task(root, style="plain", combos=COMBOS, per_split={"train": 40}, seed=4)
    (root / "train" / "red_circle" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "train" / "blue_star" / "empty.jpg").write_bytes(b"")
    return root


def tag(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "tag", str(folder), "-r", "--model", "clipzero-shapes", "--labels", *LABELS, "--templates", "photo",
        "--out", str(out), *extra, env={"RAY_ADDRESS": ""},
    )  # fmt: skip


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_engine_matches_local_engine(folder: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert tag(folder, local).returncode == 0
    result = tag(folder, remote, "--engine", "ray")
    assert result.returncode == 0, result.stderr[-3000:]
    by_local = {r["image"]: r["label"] for r in rows(local)}
    by_ray = {r["image"]: r["label"] for r in rows(remote)}
    assert len(by_ray) == 200 and by_ray == by_local
    errors = {Path(r["image"]).name: r["error"] for r in rows(Path(str(remote) + ".errors.jsonl"))}
    assert set(errors) == {"corrupt.png", "empty.jpg"}
    shards = sorted(Path(str(remote) + ".embeddings").glob("part-*.parquet"))
    from clipzero.store.sharded import read_shard

    paths = [p for shard in shards for p in read_shard(shard)[0]]
    assert sorted(paths) == sorted(by_ray)


@pytest.mark.slow
def test_killed_ray_run_resumes_without_loss_or_duplicates(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    command = [
        sys.executable, "-m", "clipzero", "tag", str(folder), "-r", "--model", "clipzero-shapes", "--labels", *LABELS,
        "--out", str(out), "--engine", "ray", "--batch-size", "8", "--shard-rows", "16",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "RAY_ADDRESS": ""})  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not out.exists() or len(rows(out)) < 16):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its local Ray cluster
    process.wait()
    partial = len(rows(out))
    assert 0 < partial < 200
    result = tag(folder, out, "--engine", "ray")
    assert result.returncode == 0, result.stderr[-3000:]
    images = [r["image"] for r in rows(out)]
    assert len(images) == len(set(images)) == 200


def _write_shards(folder: Path, vectors: np.ndarray, per_shard: int) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number, start in enumerate(range(0, len(vectors), per_shard)):
        chunk = vectors[start : start + per_shard]
        table = pa.Table.from_pylist(
            [{"path": f"/img/{start + i}.jpg", "vector": v.tolist()} for i, v in enumerate(chunk)]
        )
        files.append(folder / f"part-{number:05d}.parquet")
        pq.write_table(table, str(files[-1]))
    return files


@pytest.mark.parametrize("pq_m", [None, 8], ids=["ivf-flat", "ivf-pq"])
def test_index_merged_from_shards_matches_one_built_whole(tmp_path: Path, pq_m: int | None) -> None:
    import faiss

    from clipzero.store.sharded import Layout, ShardedIndex, build_from_shards

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    files = _write_shards(tmp_path / "shards", vectors, per_shard=700)
    layout = Layout(nlist=20, pq_m=pq_m)
    trained = faiss.index_factory(32, layout.factory(32), faiss.METRIC_INNER_PRODUCT)
    trained.train(vectors)  # one training for both, so the same quantizers
    summary = build_from_shards(files, tmp_path / "merged.index", trained=faiss.clone_index(trained))
    assert summary["vectors"] == 3000 and summary["shards"] == 5
    merged = ShardedIndex(tmp_path / "merged.index", nprobe=5)
    whole = faiss.clone_index(trained)
    whole.add(vectors)
    faiss.extract_index_ivf(whole).nprobe = 5
    queries = vectors[:25] + 0.05 * rng.normal(size=(25, 32)).astype(np.float32)
    _, expected = whole.search(queries, 10)
    found = merged.search(queries, 10)
    assert [[p for p, _ in row] for row in found] == [[f"/img/{i}.jpg" for i in row] for row in expected]
    assert found[0][0][0] == "/img/0.jpg"
    merged.close()
    sampled = build_from_shards(files, tmp_path / "sampled.index", layout=layout, train_size=1500)  # trained here
    assert sampled["vectors"] == 3000
    assert ShardedIndex(tmp_path / "sampled.index", nprobe=20).search(vectors[:1], 1)[0][0][0] == "/img/0.jpg"


def test_layout_follows_size_and_budget() -> None:
    from clipzero.store.sharded import choose_layout

    small = choose_layout(10_000, 512)
    assert small.pq_m is None and 1 <= small.nlist <= 10_000 // 39
    huge = choose_layout(100_000_000, 512, memory_budget_gb=64)
    assert huge.pq_m == 128 and huge.nlist == 40_000
    assert huge.bytes_per_vector(512) == 136
