"""Texts encoded at the length they need give open_clip's own full-context embeddings, for every text-tower kind
built here; towers where that cannot hold keep the full context."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CFG

TEXTS = ["a", "a red circle", "a photo of a small blue star.", "two green crosses on a striped background, drawn " * 3,
         "红色的圆形", "x " * 40]  # fmt: skip


def _variant(name: str) -> dict:
    cfg = copy.deepcopy(TINY_CFG)
    if name == "custom-text":
        cfg["custom_text"] = True
    elif name == "bidirectional-last":  # SigLIP-like: no causal mask, pooled at the last position
        cfg["custom_text"] = True
        cfg["text_cfg"].update({"no_causal_mask": True, "pool_type": "last"})
    return cfg


def _encoder(tmp_path: Path, name: str, precision: str = "fp32") -> object:
    import open_clip

    from clipzero.encoder import Encoder

    arch = f"clipzero-test-text-{name}"
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    (folder / f"{arch}.json").write_text(json.dumps(_variant(name)))
    open_clip.add_model_config(folder)
    torch.manual_seed(1)
    model = open_clip.create_model(arch).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    return Encoder.from_open_clip(model, lambda image: image, tokenizer, id=arch, precision=precision)


def _full(encoder: object) -> np.ndarray:
    """open_clip's own encode_text over the whole context, one text at a time."""
    rows = []
    with torch.inference_mode():
        for text in TEXTS:
            vector = encoder.model.encode_text(encoder.tokenizer([text]))  # type: ignore[attr-defined]
            rows.append(torch.nn.functional.normalize(vector.float(), dim=-1)[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize(("kind", "trims"), [("builtin", True), ("custom-text", True), ("bidirectional-last", False)])
def test_trimmed_text_encoding_equals_the_full_context(tmp_path: Path, kind: str, trims: bool) -> None:
    encoder = _encoder(tmp_path, kind)
    assert encoder.trims_text is trims  # type: ignore[attr-defined]
    for batch_size in (1, 2, 256):  # texts of different lengths together, and each alone
        got = encoder.encode_texts(TEXTS, batch_size=batch_size)  # type: ignore[attr-defined]
        np.testing.assert_allclose(got, _full(encoder), atol=1e-5)


def test_the_probe_turns_trimming_off_when_it_would_change_the_result(tmp_path: Path) -> None:
    from clipzero.textlength import trimmed_text_encoder

    encoder = _encoder(tmp_path, "builtin")
    model = encoder.model  # type: ignore[attr-defined]
    assert trimmed_text_encoder(model, encoder.tokenizer, encoder.device) is not None  # type: ignore[attr-defined]
    model.attn_mask = torch.zeros_like(model.attn_mask)  # attention no longer causal: the tail now matters
    assert trimmed_text_encoder(model, encoder.tokenizer, encoder.device) is None  # type: ignore[attr-defined]


def test_the_bundled_model_trims_and_imports_neither_transformers_nor_timm() -> None:
    import subprocess
    import sys

    script = ("import sys\nfrom clipzero.factory import open_encoder\nencoder = open_encoder('clipzero-shapes')\n"
              "encoder.encode_texts(['a red circle'])\n"
              "print(encoder.trims_text, 'transformers' in sys.modules, 'timm' in sys.modules)\n"
              "from clipzero.backend import open_clip_module\n"  # a later model that needs them gets them
              "open_clip = open_clip_module({'transformers', 'timm'})\n"
              "print(open_clip.hf_model.transformers is not None,\n"
              "      open_clip.timm_model.timm is not None)\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "False", "False", "True", "True"], result.stderr
