"""Wrong requests fail before any model loads, with exit 2; missing extras are named before any work; the
offline default-model error points at the model that works offline; --labels with commas."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import run


def in_fresh_python(*argv: str, missing: tuple[str, ...] = (), env: dict[str, str] | None = None
                    ) -> tuple[int, str, set[str], float]:  # fmt: skip
    """Run ``clipzero ARGV`` in a new interpreter, with ``missing`` modules made unimportable (as if their extra
    were not installed). Returns (exit code, stderr, which of torch/open_clip got imported, seconds)."""
    import os

    code = (
        "import sys, json\n"
        f"for name in {list(missing)!r}:\n"
        "    sys.modules[name] = None\n"
        "from clipzero.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(json.dumps([rc, sorted(m for m in ('torch', 'open_clip') if m in sys.modules)]))\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.stdout.strip(), result.stderr[-3000:]
    rc, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    return rc, result.stderr, set(loaded), elapsed


@pytest.fixture(scope="module")
def bare_start() -> float:
    """Seconds for a bare interpreter to import the CLI and build its parser: the yardstick for 'at once'."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import clipzero.cli as c; c.build_parser()"], check=True, timeout=120)
    return time.perf_counter() - started


def _image(tmp_path: Path) -> str:
    from tests.conftest import write_image

    return str(write_image(tmp_path / "x.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels-file", "{empty}"], "holds no labels"),
        (["--labels-file", "{missing}"], "not found"),
        (["--labels", "cat", "dog", "--templates", "photos"], "photos"),
        (["--labels", "cat", "dog", "--threshold", "1.5"], "between 0 and 1"),
        (["--labels", "cat", "dog", "--top-k", "0"], "--top-k must be at least 1"),
        (["--labels", "cat", "dog", "--head", "h.safetensors"], "--head brings its own labels"),
    ],
)
def test_wrong_classify_requests_fail_before_torch(
    tmp_path: Path, bare_start: float, args: list[str], message: str
) -> None:
    (tmp_path / "empty.txt").write_text("# no labels here\n\n")
    argv = [a.format(empty=tmp_path / "empty.txt", missing=tmp_path / "nope.txt") for a in args]
    rc, stderr, loaded, seconds = in_fresh_python("classify", _image(tmp_path), *argv)
    assert rc == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert loaded == set()  # neither torch nor open_clip was imported, so no model was loaded
    assert seconds < 3 * bare_start + 2.0  # a model load alone takes 10 s and more


def test_duplicate_labels_are_merged_with_a_warning_before_any_model_loads(tmp_path: Path) -> None:
    rc, stderr, loaded, _ = in_fresh_python(
        "classify", _image(tmp_path), "--labels", "cat", "Cat", "--templates", "photos"
    )
    assert rc == 2 and "duplicate label 'Cat' merged with 'cat'" in stderr and loaded == set()


def test_a_precision_or_device_the_machine_lacks_is_a_wrong_request(tmp_path: Path) -> None:
    rc, stderr, loaded, _ = in_fresh_python("classify", _image(tmp_path), "--labels", "a", "b", "--precision",
                                            "fp16", "--device", "cpu")  # fmt: skip
    assert rc == 2 and "fp16 needs a GPU" in stderr and "open_clip" not in loaded
    import torch

    if not torch.cuda.is_available():
        rc, stderr, loaded, _ = in_fresh_python("tag", _image(tmp_path), "--labels", "a", "b", "--out",
                                                str(tmp_path / "r.jsonl"), "--device", "cuda")  # fmt: skip
        assert rc == 2 and "CUDA is not available" in stderr and "open_clip" not in loaded
        assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["tag", "{img}", "--labels", "a", "b", "--out", "{dir}/r.parquet"], ("pyarrow",), "parquet"),
        (["tag", "{img}", "--labels", "a", "b", "--out", "{dir}/r.jsonl", "--engine", "ray"], ("ray",), "ray"),
        (["classify", "{img}", "--labels", "a", "b", "--rerank", "--llm-url", "http://127.0.0.1:9/v1",
          "--llm-model", "m"], ("httpx",), "llm"),
        (["serve", "--model", "clipzero-shapes", "--port", "9"], ("gradio",), "web"),
        (["mcp", "--model", "clipzero-shapes", "--root", "{dir}"], ("mcp",), "mcp"),
        (["prompts", "describe", "--labels", "a", "--out", "{dir}/d.yaml", "--llm-url", "http://127.0.0.1:9/v1",
          "--llm-model", "m"], ("httpx",), "llm"),
        (["dedup", "--store", "{dir}/store", "--out", "{dir}/groups.csv"], ("cv2",), "dedup"),
        (["tag", "{img}", "--labels", "a", "b", "--out", "{dir}/r.jsonl", "--xmp"], ("pyexiv2",), "xmp"),
        (["export", "{dir}/r.jsonl", "--to", "xmp"], ("pyexiv2",), "xmp"),
    ],
)  # fmt: skip
def test_a_missing_extra_is_named_before_any_work(
    tmp_path: Path, argv: list[str], missing: tuple[str, ...], extra: str
) -> None:
    filled = [a.format(img=_image(tmp_path), dir=tmp_path) for a in argv]
    rc, stderr, loaded, _ = in_fresh_python(*filled, missing=missing)
    assert rc == 2, stderr
    assert f"pip install 'clipzero[{extra}]'" in stderr and "Traceback" not in stderr
    assert "open_clip" not in loaded  # no model was loaded, no image tagged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no result file, no partial file
    assert "serving on" not in stderr


def test_the_offline_default_model_error_names_the_model_that_works_offline(tmp_path: Path) -> None:
    result = run("classify", _image(tmp_path), "--labels", "a", "b", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    first = result.stderr.strip().splitlines()[0]
    assert "no network" in first and "--model clipzero-shapes" in first, result.stderr
    assert "default model" in result.stderr and "Traceback" not in result.stderr


def test_serve_checks_the_model_before_printing_its_address(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "--model clipzero-shapes" in result.stderr
    assert "serving on" not in result.stderr


def test_one_labels_argument_with_commas_is_split_with_a_warning(tmp_path: Path) -> None:
    from tests.conftest import write_image

    picture = write_image(tmp_path / "red.png", (220, 20, 20), size=(64, 64))
    result = run("classify", str(picture), "--labels", "red circle,blue star", "--model", "clipzero-shapes",
                 "--templates", "photo", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    labels = {p["label"] for p in json.loads(result.stdout)[0]["predictions"]}
    assert labels == {"red circle", "blue star"}  # two labels, as the web UI and the API would read the text
    assert "split at its commas into 2 labels" in result.stderr and "--labels-file" in result.stderr
    kept = run("classify", str(picture), "--labels", "a circle, red", "a star", "--model", "clipzero-shapes",
               "--templates", "photo", "--json")  # fmt: skip
    assert {p["label"] for p in json.loads(kept.stdout)[0]["predictions"]} == {"a circle, red", "a star"}
    assert "split" not in kept.stderr


def test_app_py_is_clipzero_serve_with_the_same_defaults() -> None:
    root = Path(__file__).resolve().parents[2]
    app = subprocess.run([sys.executable, str(root / "app.py"), "--help"], capture_output=True, text=True, timeout=60)
    serve = run("serve", "--help")
    assert app.returncode == serve.returncode == 0
    body = [line for line in serve.stdout.splitlines() if not line.startswith("usage")]
    assert [line for line in app.stdout.splitlines() if not line.startswith("usage")] == body
    assert "(default 64)" in serve.stdout and "$CLIPZERO_MODEL" in serve.stdout  # the real defaults are stated


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "{dir}/nope"], "is not a folder"),
        (["--templates", "photos"], "unknown template set"),
        (["--max-images", "0"], "--max-images must be positive"),
        (["--store", "{dir}"], "no embedding store"),
    ],
)
def test_wrong_mcp_requests_fail_before_any_model_loads(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [a.format(dir=tmp_path) for a in args]
    rc, stderr, loaded, _ = in_fresh_python("mcp", "--model", "clipzero-shapes", *argv)
    assert rc == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert "open_clip" not in loaded


def test_wrong_calibrate_and_calibration_requests_fail_before_any_model_loads(tmp_path: Path) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    rc, stderr, loaded, _ = in_fresh_python("calibrate", str(tmp_path / "data"), "--out", str(tmp_path / "c.json"),
                                            "--out-of-set", str(tmp_path / "nope"))  # fmt: skip
    assert rc == 2 and "--out-of-set" in stderr and "is not a folder" in stderr and "open_clip" not in loaded
    (tmp_path / "c.json").write_text("{}")
    rc, stderr, loaded, _ = in_fresh_python("classify", _image(tmp_path), "--labels", "a", "b", "--calibration",
                                            str(tmp_path / "c.json"))  # fmt: skip
    assert rc == 2 and "not a clipzero calibration file" in stderr and loaded == set()


@pytest.fixture(scope="module")
def bundled_load() -> float:
    """Seconds for a fresh interpreter to load the bundled model: the yardstick of 'before it works'."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import clipzero; clipzero.load_model('clipzero-shapes')"], check=True,
                   timeout=300)  # fmt: skip
    return time.perf_counter() - started


@pytest.fixture()
def taken_port() -> object:
    """A port another server is listening on."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "{dir}/nope.jpg", "{img}", "--labels", "a", "b", "--model", "clipzero-shapes"],
         "no such file: {dir}/nope.jpg"),
        (["classify", "{dir}", "--labels", "a", "b", "--model", "clipzero-shapes"], "is a folder"),
        (["classify", "{img}", "--labels", "a", "b", "--model", "ViT-B-3"], "did you mean ViT-B-32"),
        (["classify", "{img}", "--labels", "a", "b", "--model", "ViT-B-32:opnai"], "has no pretrained tag 'opnai'"),
        (["classify", "{img}", "--labels", "a", "b", "--model", "clipzero-shape"], "did you mean clipzero-shapes"),
        (["tag", "{img}", "--labels", "a", "b", "--out", "{dir}/r.jsonl", "--model", "ViT-B-3"], "did you mean"),
        (["serve", "--model", "clipzero-shapes", "--port", "{port}"], "already in use"),
        (["mcp", "--http", "--model", "clipzero-shapes", "--root", "{dir}", "--port", "{port}"], "already in use"),
        (["serve", "--model", "ViT-B-3", "--port", "0"], "did you mean"),
    ],
)  # fmt: skip
def test_mistakes_fail_before_torch_in_under_half_a_model_load(
    tmp_path: Path, bundled_load: float, taken_port: int, argv: list[str], message: str
) -> None:
    image = _image(tmp_path)
    filled = [a.format(img=image, dir=tmp_path, port=taken_port) for a in argv]
    rc, stderr, loaded, seconds = in_fresh_python(*filled)
    assert rc == 2, stderr
    assert message.format(dir=tmp_path) in stderr and "Traceback" not in stderr
    assert loaded == set()  # neither torch nor open_clip was imported: no model was near loading
    assert seconds < bundled_load / 2, (seconds, bundled_load)
    assert "serving on" not in stderr and "MCP on" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no result file


def test_the_default_model_offline_fails_before_torch(tmp_path: Path, bundled_load: float) -> None:
    rc, stderr, loaded, seconds = in_fresh_python("classify", _image(tmp_path), "--labels", "a", "b",
                                                  env={"HF_HUB_OFFLINE": "1", "CLIPZERO_MODEL": ""})  # fmt: skip
    assert rc == 1 and "not available offline" in stderr and "default model" in stderr
    assert loaded == set() and seconds < bundled_load / 2


def test_serve_holds_its_port_before_it_says_so_and_port_0_prints_the_real_one(tmp_path: Path) -> None:
    import re
    import socket

    process = subprocess.Popen([sys.executable, "-m", "clipzero", "serve", "--model", "clipzero-shapes", "--port",
                                "0", "--no-ui"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = process.stderr.readline() if process.stderr else ""
        while line and "serving on" not in line:
            line = process.stderr.readline() if process.stderr else ""
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        port = int(found[1])
        assert port != 0
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # the server holds it
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
