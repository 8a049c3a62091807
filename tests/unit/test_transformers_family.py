"""transformers CLIP-family models behind the Encoder: the model's own scores to 1e-5 for each family, the cached
hub layout offline, no pickles, precisions, `clipzero info`, and a store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzero import ModelLoadError, ModelUnavailableError, ZeroShotClassifier, load_model
from tests.hf_models import save_tiny

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAMILIES = ("clip", "chinese_clip", "siglip", "siglip2", "altclip")
LABELS = ["a photo of the red circle", "blue star", "green cross .", "一 张 红 色 圆 形 的 照 片"]
CLASSES = {"clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel", "siglip": "SiglipModel",
           "siglip2": "Siglip2Model", "altclip": "AltCLIPModel"}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transformers")
    return {family: save_tiny(family, root / family) for family in FAMILIES}


def _their_probabilities(family: str, folder: Path, images: list[Image.Image], context: int) -> np.ndarray:
    model = getattr(transformers, CLASSES[family]).from_pretrained(folder).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    sigmoid = family.startswith("siglip")
    padding = {"padding": "max_length", "max_length": context} if sigmoid else {"padding": True}
    texts = tokenizer(LABELS, return_tensors="pt", truncation=True, **padding)
    with torch.no_grad():
        logits = model(**processor(images=images, return_tensors="pt"), **texts)  # NaFlex: with mask and shapes
    scores = logits.logits_per_image
    return (torch.sigmoid(scores) if sigmoid else scores.softmax(dim=-1)).numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_equal_the_models_own(folders: dict[str, Path], family: str) -> None:
    images = [Image.open(p).convert("RGB") for p in sorted(EXAMPLES.glob("*.png"))[:5]]
    encoder = load_model(f"hf-transformers:{folders[family]}")
    assert encoder.arch == f"transformers/{family}" and encoder.id.startswith(f"hf-transformers:{family}@sha256:")
    classifier = ZeroShotClassifier(encoder, LABELS, templates=["{label}"])
    ours, _ = classifier.scores(encoder.encode_images(images))
    theirs = _their_probabilities(family, folders[family], images, encoder.context_length)
    assert np.abs(ours - theirs).max() < 1e-5
    assert classifier.uses_sigmoid == family.startswith("siglip")
    if not family.startswith("siglip"):
        assert np.allclose(ours.sum(axis=1), 1.0)


def test_a_plain_folder_loads_and_precisions_apply(folders: dict[str, Path]) -> None:
    fp32 = load_model(str(folders["clip"]))
    bf16 = load_model(str(folders["clip"]), precision="bf16")
    assert fp32.id == bf16.id and bf16.precision == "bf16"
    a, b = fp32.encode_texts(LABELS), bf16.encode_texts(LABELS)
    assert not np.array_equal(a, b)  # the weights really run in bf16
    assert float((a * b).sum(axis=1).min()) > 0.98  # the same embeddings, to bf16's rounding


def _hub_layout(cache: Path, repo: str, folder: Path, commit: str) -> None:
    """The Hugging Face cache as a download leaves it: blobs, a snapshot named by the commit, refs/main."""
    base = cache / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    for path in folder.iterdir():
        shutil.copyfile(path, snapshot / path.name)


def test_the_cached_hub_layout_loads_offline(folders: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    _hub_layout(cache, "tiny-org/tiny-siglip", folders["siglip"], commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_model("hf-transformers:tiny-org/tiny-siglip")
    assert encoder.id == "hf-transformers:tiny-org/tiny-siglip@0123456789ab"
    assert encoder.logit_bias == pytest.approx(-1.5)
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="tiny-org/not-cached") as caught:
        load_model("hf-transformers:tiny-org/not-cached")
    assert time.monotonic() - start < 5 and "clipzero-shapes" in str(caught.value)


def test_pickled_weights_are_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(folders["clip"], folder)
    state = {k: torch.tensor(0.0) for k in ("x",)}
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no safetensors weights"):
        load_model(str(folder))


def test_info_and_a_store_work_with_it(folders: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "CLIPZERO_HOME": str(tmp_path / "home")}
    info = subprocess.run([sys.executable, "-m", "clipzero", "info", str(folders["altclip"]), "--json"],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["arch"] == "transformers/altclip" and data["embed_dim"] == 24 and data["params_image"] > 0
    assert data["params_text"] > 0 and data["memory_bytes"]["bf16"] * 2 == data["memory_bytes"]["fp32"]
    store = tmp_path / "store"
    add = subprocess.run([sys.executable, "-m", "clipzero", "index", "add", str(EXAMPLES), "--store", str(store),
                          "--model", str(folders["altclip"]), "-q"], capture_output=True, text=True, timeout=300,
                         env=env)  # fmt: skip
    assert add.returncode == 0 and "encoded 8" in add.stdout, add.stderr
    found = subprocess.run([sys.executable, "-m", "clipzero", "search", "--image", str(EXAMPLES / "red-circle.png"),
                            "--store", str(store), "-k", "1", "--json"], capture_output=True, text=True, timeout=300,
                           env=env)  # fmt: skip
    assert json.loads(found.stdout)[0]["path"].endswith("red-circle.png")


@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_multi_label_with_siglip_decides_by_its_own_sigmoid(folders: dict[str, Path], family: str) -> None:
    encoder = load_model(str(folders[family]), device="cpu", precision="fp32")
    classifier = ZeroShotClassifier(encoder, LABELS, templates=["{label}"])
    images = [str(p) for p in sorted(EXAMPLES.glob("*.png"))[:3]]
    results = classifier.classify(images, multi_label=True, views=5, top_k=len(LABELS))
    alone = classifier.classify(images, top_k=len(LABELS))  # the model's own per-label sigmoid on the whole image
    for multi, single in zip(results, alone):
        scores = {p.label: p.score for p in multi.predictions}
        assert {t.label for t in multi.tags or []} == {label for label, s in scores.items() if s >= 0.5}
        for p in single.predictions:  # the best of 5 views is at least the whole image's sigmoid
            assert scores[p.label] >= p.score - 1e-6
