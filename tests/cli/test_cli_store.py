"""`clipzero index` and `clipzero search` end to end, a killed writer, and `classify --store`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from clipzero.store import EmbeddingStore
from tests.cli.test_cli import run
from tests.conftest import write_image, write_pictures


def test_index_add_info_search_prune(tiny_model_dir: Path, tmp_path: Path) -> None:
    pics = write_pictures(tmp_path / "pics" / "sub", 5)
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    store = tmp_path / "store"
    flat = run("index", "add", str(tmp_path / "pics"), "--store", str(store), "--model", str(tiny_model_dir), "--json")
    assert flat.returncode == 2 and "no images found under" in flat.stderr  # none at the top level: said, exit 2
    assert "--recursive" in flat.stderr and not store.exists()  # before the model loaded
    deep = run("index", "add", str(tmp_path / "pics"), "--recursive", "--store", str(store), "--model",
               str(tiny_model_dir), "--json")  # fmt: skip
    report = json.loads(deep.stdout)
    assert deep.returncode == 0 and report["encoded"] == 5 and report["images_in_store"] == 5
    again = run("index", "add", str(pics[0]), "--store", str(store), "--json")  # no --model: the store's own
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] == 1
    info = json.loads(run("index", "info", "--store", str(store), "--json").stdout)
    assert info["images"] == 5 and info["index"]["kind"] == "flat"
    hits = json.loads(run("search", "--image", str(pics[3]), "--store", str(store), "--top-k", "2", "--json").stdout)
    assert hits[0]["path"] == str(pics[3]) and set(hits[0]) == {"path", "score", "sha256"}
    assert hits[0]["score"] >= hits[1]["score"]
    text = run("search", "a red circle", "--store", str(store), "--top-k", "3", "--json")
    assert text.returncode == 0 and len(json.loads(text.stdout)) == 3
    pics[0].unlink()
    pruned = run("index", "prune", "--store", str(store))
    assert pruned.returncode == 0 and "pruned 1" in pruned.stdout


def test_search_usage_errors(tmp_path: Path) -> None:
    neither = run("search", "--store", str(tmp_path / "s"))
    assert neither.returncode == 2 and "TEXT" in neither.stderr
    missing = run("search", "cats", "--store", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no store at" in missing.stderr


def test_killed_writer_leaves_a_consistent_store(tiny_model_dir: Path, tmp_path: Path) -> None:
    pics = write_pictures(tmp_path / "pics", 160)
    store = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "clipzero",
        "index",
        "add",
        str(tmp_path / "pics"),
        "--store",
        str(store),
        "--model",
        str(tiny_model_dir),
        "--batch-size",
        "4",
        "--quiet",
    ]
    writer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    rows = 0
    while time.monotonic() < deadline and writer.poll() is None:
        try:
            with sqlite3.connect(store / "store.sqlite") as db:
                rows = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            rows = 0
        if rows >= 12:
            break
        time.sleep(0.05)
    assert writer.poll() is None, "the writer finished before it could be killed"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    partial = EmbeddingStore(store)
    partial.check()  # every vector has its row and every row its vector
    assert 12 <= len(partial) < 160
    partial.close()
    rerun = subprocess.run([*command[:-1], "--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["images_in_store"] == 160 and report["unchanged"] >= 12
    assert report["encoded"] + report["unchanged"] == len(pics)  # nothing lost, nothing twice
    EmbeddingStore(store).check()


def test_classify_reuses_stored_embeddings(tiny_model_dir: Path, tmp_path: Path) -> None:
    pics = write_pictures(tmp_path / "pics", 3)
    store = tmp_path / "store"
    made = run("index", "add", *map(str, pics), "--store", str(store), "--model", str(tiny_model_dir), "--precision",
               "fp32")  # fmt: skip
    assert made.returncode == 0
    code = (
        "import sys, clipzero\n"
        f"store = clipzero.EmbeddingStore({str(store)!r})\n"
        "encoder = clipzero.load_model(store.model_spec, precision='fp32')\n"  # the store's: auto is bf16 on AVX-512
        "clf = clipzero.ZeroShotClassifier(encoder, ['red', 'green'], templates='photo')\n"
        "with_store = clf.classify(sys.argv[1:], store=store)\n"
        "print(encoder.images_encoded)\n"
        "without = clf.classify(sys.argv[1:])\n"
        "print(encoder.images_encoded)\n"
        "print(all(abs(a.predictions[0].score - b.predictions[0].score) < 1e-5 for a, b in zip(with_store, without)))\n"
    )
    new = write_image(tmp_path / "pics" / "new.png", (10, 10, 250))
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, pics), str(new)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "5", "True"]  # only the new image was encoded with the store
    cli = run("classify", *map(str, pics), "--labels", "red", "green", "--store", str(store), "--json")
    assert cli.returncode == 0 and len(json.loads(cli.stdout)) == 3


def test_a_damaged_store_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    pics = write_pictures(tmp_path / "pics", 2)
    assert run("index", "add", *map(str, pics), "--store", str(store), "--model", str(tiny_model_dir)).returncode == 0
    for leftover in store.glob("store.sqlite-*"):  # WAL files of the closed store
        leftover.unlink()
    (store / "store.sqlite").write_bytes(b"this is not a database, it was overwritten" * 100)
    for command in (("index", "info", "--store", str(store)), ("search", "a red circle", "--store", str(store))):
        result = run(*command)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "sqlite3" not in result.stderr.split(":")[0]
        assert str(store / "store.sqlite") in result.stderr and "rebuild" in result.stderr, result.stderr


def test_an_empty_store_file_gets_the_damaged_store_message_not_a_traceback(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "store.sqlite").write_bytes(b"")
    for command in (["index", "info", "--store", str(store)], ["search", "red", "--store", str(store)]):
        result = run(*command)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "damaged or is not a clipzero store (the file is empty)" in result.stderr
