"""Shared fixtures: a tiny real open_clip model on disk, real image files, and an isolated environment."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.llm_server"]  # the llm_server fixture: an OpenAI-compatible server on 127.0.0.1

# fp32 wherever `auto` would pick bf16 (a CPU with native bf16), from the first fixture on and in every process a
# test starts: the suite's numbers are then the same on every machine. A test of the precision choice removes it.
os.environ["CLIPZERO_PRECISION"] = "fp32"

#: A small open_clip architecture (about 3.5M parameters, most of them the token embedding): fast on a CPU.
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_ARCH = "clipzero-test-tiny"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """clipzero's home and the Hugging Face cache in tmp_path; the hub pointed at a closed local port."""
    monkeypatch.setenv("CLIPZERO_HOME", str(tmp_path / "clipzero-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CLIPZERO_MODEL", raising=False)
    monkeypatch.setenv("CLIPZERO_PRECISION", "fp32")  # see the top of this file
    monkeypatch.delenv("CLIPZERO_TEMPLATES", raising=False)
    monkeypatch.delenv("CLIPZERO_CONFIG", raising=False)
    for name in ("CLIPZERO_DEVICE", "CLIPZERO_LLM_URL", "CLIPZERO_LLM_MODEL", "CLIPZERO_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    from clipzero.rejection import clear_rule_cache
    from clipzero.zeroshot import clear_label_cache

    clear_label_cache()
    clear_rule_cache()
    yield


def _register_tiny(folder: Path) -> None:
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder)


@pytest.fixture(scope="session")
def tiny_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny architecture, registered with open_clip under TINY_ARCH."""
    _register_tiny(tmp_path_factory.mktemp("configs"))
    return TINY_ARCH


@pytest.fixture(scope="session")
def tiny_model(tiny_arch: str) -> object:
    """A tiny open_clip model with seeded random weights (fp32, CPU, eval)."""
    import open_clip
    import torch

    torch.manual_seed(0)
    return open_clip.create_model(tiny_arch).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: object) -> Path:
    """A directory in open_clip's own layout: open_clip_config.json and open_clip_model.safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-model")
    config = {"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}  # type: ignore[attr-defined]
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> object:
    from clipzero import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def write_image(
    path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (48, 40), fmt: str | None = None
) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (240, 240, 240))
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    image.save(path, format=fmt)
    return path


def write_pictures(
    folder: Path, n: int, suffix: str = ".png", seed: int = 1, size: tuple[int, int] = (36, 36)
) -> list[Path]:
    """``n`` small image files of random colours in ``folder``, named p000, p001, ..."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [
        write_image(folder / f"p{i:03d}{suffix}", tuple(int(c) for c in rng.integers(0, 255, 3)), size=size)
        for i in range(n)
    ]


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small real image files of different colours and formats."""
    folder = tmp_path / "images"
    folder.mkdir()
    return [
        write_image(folder / "red.png", (220, 20, 20)),
        write_image(folder / "green.jpg", (20, 200, 40)),
        write_image(folder / "blue.webp", (30, 40, 210)),
    ]
