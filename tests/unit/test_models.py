"""load_model: every spec form from real files, safe loading, precision, and the offline behaviour."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clipzero import (
    ClipzeroError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnavailableError,
    load_model,
    register_model,
)
from clipzero.encoder import Encoder
from clipzero.models import parse_spec


def _same_weights(encoder: Encoder, model: torch.nn.Module) -> bool:
    theirs = model.state_dict()
    return all(torch.equal(value.float(), theirs[key].float()) for key, value in encoder.model.state_dict().items())


def test_local_directory(tiny_model_dir: Path, tiny_model: torch.nn.Module) -> None:
    encoder = load_model(str(tiny_model_dir), device="cpu")
    assert encoder.arch == "clipzero-test-tiny" and encoder.embed_dim == 32 and encoder.context_length == 16
    assert encoder.id.startswith("clipzero-test-tiny@sha256:")
    assert _same_weights(encoder, tiny_model)
    assert load_model(f"local-dir:{tiny_model_dir}").id == encoder.id


def test_safetensors_and_pt_files(tmp_path: Path, tiny_arch: str, tiny_model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pt")
    from_st = load_model(f"{tiny_arch}:{tmp_path / 'w.safetensors'}")
    from_pt = load_model(f"{tiny_arch}:{tmp_path / 'w.pt'}")
    assert _same_weights(from_st, tiny_model) and _same_weights(from_pt, tiny_model)
    assert from_st.id.startswith(f"{tiny_arch}@sha256:") and from_st.id != from_pt.id  # the id follows the file
    text = from_st.encode_texts(["a photo of a cat."])
    assert text.dtype == np.float32 and text.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text, from_pt.encode_texts(["a photo of a cat."]), atol=1e-6)


def test_bare_safetensors_with_arch_metadata(tmp_path: Path, tiny_arch: str, tiny_model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(state, str(tmp_path / "tagged.safetensors"), metadata={"arch": tiny_arch})
    assert load_model(str(tmp_path / "tagged.safetensors")).arch == tiny_arch
    save_file(state, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelNotFoundError, match="pass it as ARCH:"):
        load_model(str(tmp_path / "plain.safetensors"))


class _Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_unsafe_pickle_refused(tmp_path: Path, tiny_arch: str) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {"x": _Payload(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="refusing to unpickle"):
        load_model(f"{tiny_arch}:{tmp_path / 'evil.pt'}")
    assert not marker.exists()


def test_wrong_architecture(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelLoadError, match="could not be loaded into the architecture"):
        load_model(f"ViT-B-32:{tmp_path / 'w.safetensors'}")


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("ViT-B-32:no_such_tag", ModelNotFoundError, "has no pretrained tag 'no_such_tag'"),
        ("ViT-B-23:laion2b_s34b_b79k", ModelNotFoundError, "did you mean"),
        ("ViT-B-32", ModelNotFoundError, "architecture without weights"),
        ("hf-hub:just-a-name", ModelNotFoundError, "hf-hub:ORG/REPO"),
        ("./missing/weights.pt", ModelNotFoundError, "does not exist"),
        ("ViT-B-32:/nowhere/w.safetensors", ModelNotFoundError, "not found"),
        ("complete-nonsense", ModelNotFoundError, "unknown model"),
    ],
)
def test_bad_specs(spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_spec(spec)


def test_registered_name_and_config_alias(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model("test-registered", str(tiny_model_dir), "a test model")
    encoder = load_model("test-registered")
    assert encoder.id.startswith("test-registered@sha256:")  # the name, tied to the weights
    home = tmp_path / "clipzero-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f'model = "mine"\n[models]\nmine = "{tiny_model_dir}"\n', encoding="utf-8")
    assert load_model().id.startswith("mine@")  # the configured default, through the alias
    monkeypatch.setenv("CLIPZERO_MODEL", "test-registered")
    assert load_model().id == encoder.id  # the environment beats the file


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_precisions_stay_close_to_fp32(tiny_model_dir: Path, images: list[Path], precision: str) -> None:
    reference = load_model(str(tiny_model_dir), precision="fp32")
    other = load_model(str(tiny_model_dir), precision=precision)
    assert other.precision == precision and other.id == reference.id  # precision does not change the id
    for a, b in [
        (reference.encode_images(images), other.encode_images(images)),
        (reference.encode_texts(["a red circle", "a blue star"]), other.encode_texts(["a red circle", "a blue star"])),
    ]:
        assert b.dtype == np.float32
        cosines = (a * b).sum(axis=1)
        assert cosines.min() > 0.98, cosines
    if precision == "bf16":
        assert next(other.model.parameters()).dtype == torch.bfloat16


def test_fp16_needs_a_gpu(tiny_model_dir: Path) -> None:
    with pytest.raises(ClipzeroError, match="fp16 needs a GPU"):
        load_model(str(tiny_model_dir), device="cpu", precision="fp16")


# -- pretrained tags: the Hugging Face cache, and failing fast offline ------------------------------------------


def _fill_hub_cache(hf_home: Path, repo: str, filename: str, writer: object) -> Path:
    """A cache entry in the hub's own layout: blobs/, snapshots/<commit>/<file> -> blob, refs/main."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    blob = root / "blobs" / "weights-blob"
    writer(blob)  # type: ignore[operator]
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).symlink_to(Path("../../blobs/weights-blob"))
    return snapshot / filename


@pytest.mark.slow
def test_cached_pretrained_tag_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ViT-B-32:laion2b_s34b_b79k with random weights of the right shape, placed in a temporary HF_HOME."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    state = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    _fill_hub_cache(
        tmp_path / "hf-home",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "open_clip_model.safetensors",
        lambda path: save_file(state, str(path)),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_model("ViT-B-32:laion2b_s34b_b79k", device="cpu")
    assert encoder.id == "ViT-B-32:laion2b_s34b_b79k" and encoder.embed_dim == 512
    loaded = encoder.model.state_dict()["visual.conv1.weight"]
    assert torch.equal(loaded, state["visual.conv1.weight"].float())
    from clipzero.catalog import list_models

    cached = [e.spec for e in list_models(cached_only=True)]
    assert "ViT-B-32:laion2b_s34b_b79k" in cached and "ViT-B-16:laion2b_s34b_b88k" not in cached


def test_uncached_tag_offline_env_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        load_model("ViT-B-32:laion2b_s34b_b79k")
    assert time.monotonic() - start < 5


def test_uncached_tag_unreachable_hub_fails_fast_and_clearly() -> None:
    """The autouse fixture points HF_ENDPOINT at a closed local port: a refused connection."""
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        load_model("ViT-B-32:laion2b_s34b_b79k")
    assert time.monotonic() - start < 5
    message = str(info.value)
    for needed in (
        "ViT-B-32:laion2b_s34b_b79k",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "hf-home",
        "cannot be reached",
        "HF_ENDPOINT",
        "clipzero models --cached",
    ):
        assert needed in message, needed


def test_silent_hub_times_out_within_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections but never answers (a black-holed network) must not hang the load."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # never accept(): connects succeed, requests get no answer
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        start = time.monotonic()
        with pytest.raises(ModelUnavailableError, match="cannot be reached"):
            load_model("ViT-B-32:laion2b_s34b_b79k")
        assert time.monotonic() - start < 5
    finally:
        server.close()


def test_hub_repo_from_cache(tmp_path: Path, tiny_model_dir: Path, tiny_model: torch.nn.Module) -> None:
    """hf-hub:ORG/REPO loads from the cache alone: config and weights in the hub's layout."""
    weights = _fill_hub_cache(
        tmp_path / "hf-home",
        "someone/tiny-clip",
        "open_clip_model.safetensors",
        lambda path: shutil.copy(tiny_model_dir / "open_clip_model.safetensors", path),
    )
    (weights.parent / "open_clip_config.json").write_text((tiny_model_dir / "open_clip_config.json").read_text())
    encoder = load_model("hf-hub:someone/tiny-clip")
    assert encoder.id == "hf-hub:someone/tiny-clip" and _same_weights(encoder, tiny_model)
    with pytest.raises(ModelUnavailableError, match="someone/other"):
        load_model("hf-hub:someone/other")


def test_threads_do_not_leak_from_probe() -> None:
    before = threading.active_count()
    with pytest.raises(ModelUnavailableError):
        load_model("ViT-B-32:laion2b_s34b_b79k")
    time.sleep(0.1)
    assert threading.active_count() <= before + 1


def test_local_dir_needs_config(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"open_clip_config\.json"):
        load_model(str(tmp_path))
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"nothing": 1}))
    with pytest.raises(ModelLoadError, match="model_cfg"):
        load_model(str(tmp_path))


def test_tokenizing_is_bounded_whatever_the_text(tiny_encoder: object) -> None:
    """A client's 2,000-character word used to cost the quadratic BPE in full; only what fits the context counts."""
    import random
    import string

    from clipzero.encoder import bounded_text

    encoder: Any = tiny_encoder
    context = encoder.context_length
    rng = random.Random(0)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(2000))
    bounded = bounded_text(word, context)
    assert len(bounded.replace(" ", "")) == context * 12 and max(len(part) for part in bounded.split()) == 64
    assert encoder.count_tokens(word) > context  # still reported as over the context (a truncation warning)
    for text in ("a photo of a red circle.", "一张红色圆形的照片。", "a photo of a " + "very " * 20 + "long label"):
        assert bounded_text(text, context) == text  # real labels and sentences are untouched
    vectors = encoder.encode_texts([word, word[:500]])
    assert vectors.shape == (2, encoder.embed_dim) and np.isfinite(vectors).all()
    cache = getattr(encoder.tokenizer, "cache", None)
    if isinstance(cache, dict):  # open_clip's word cache is reset before it grows without end
        encoder.encode_texts([" ".join(f"w{i}x{rng.random()}" for i in range(500)) for _ in range(60)])
        assert len(cache) <= 20_000 + 500


def test_spec_tables_read_without_open_clip_match_open_clips_own() -> None:
    """Specs are checked from open_clip's files before it is imported: the architectures, the pretrained tags and
    where each tag's weights come from must be exactly what open_clip itself says, for every entry."""
    import subprocess
    import sys

    code = ("import json, sys\nfrom clipzero import backend\n"
            "archs = backend.architectures()\n"
            "table = {a: {t: {k: v for k, v in backend.pretrained_cfg(a, t).items() if k in ('hf_hub', 'url', "
            "'quick_gelu')} for t in backend.pretrained_tags(a)} for a in archs}\n"
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n"
            "print(json.dumps([archs, table]))\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    archs, table = json.loads(done.stdout)
    real_code = ("import json\nfrom clipzero.backend import open_clip_module\noc = open_clip_module()\n"
                 "print(json.dumps({a: {t: {k: oc.get_pretrained_cfg(a, t).get(k) for k in ('hf_hub', 'url', "
                 "'quick_gelu')} for t in oc.list_pretrained_tags_by_model(a)}\n"
                 "                  for a in oc.list_models()}))\n")  # fmt: skip
    real = subprocess.run([sys.executable, "-c", real_code], capture_output=True, text=True, timeout=300)
    assert real.returncode == 0, real.stderr
    theirs = json.loads(real.stdout)  # open_clip itself, in a process of its own (no test configs registered)
    assert sorted(archs) == sorted(theirs) and len(archs) > 100
    for arch in archs:
        assert list(table[arch]) == list(theirs[arch]), arch
        for tag, light in table[arch].items():
            found = theirs[arch][tag]
            assert light.get("hf_hub", "") == (found["hf_hub"] or "") and light.get("url", "") == (found["url"] or "")
            assert bool(light.get("quick_gelu")) == bool(found["quick_gelu"]), (arch, tag)


def test_a_spec_is_refused_with_close_names_without_importing_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom clipzero.modelspec import parse_spec\nfrom clipzero.errors import ModelNotFoundError\n"
            "for spec in ('ViT-B-3', 'ViT-B-32:opnai', 'clipzero-shape', 'ViT-B-32'):\n"
            "    try:\n        parse_spec(spec)\n    except ModelNotFoundError as exc:\n        print(exc)\n"
            "parse_spec('ViT-B-32:openai'); parse_spec('clipzero-shapes')\n"
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 5, done.stderr
    assert "did you mean ViT-B-32" in lines[0] and "no pretrained tag 'opnai'" in lines[1] and "openai" in lines[1]
    assert "did you mean clipzero-shapes" in lines[2] and "architecture without weights" in lines[3]
    assert lines[4] == "[]"
