"""describe_model: parameters per tower, memory by precision, FLOPs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipzero import describe_model


def test_tiny_model_figures(tiny_model_dir: Path, tiny_model: torch.nn.Module) -> None:
    info = describe_model(str(tiny_model_dir))
    assert info.weights_loaded and info.embed_dim == 32 and info.image_size == 32 and info.context_length == 16
    total = sum(p.numel() for p in tiny_model.parameters())
    assert info.params_total == total
    assert info.params_image == sum(p.numel() for p in tiny_model.visual.parameters())
    assert info.params_image + info.params_text + 1 == total  # + the logit scale
    assert info.memory_bytes["fp32"] == 4 * total and info.memory_bytes["bf16"] == 2 * total
    assert info.memory_bytes["bf16"] < info.memory_bytes["int8"] < info.memory_bytes["fp32"]
    # One ViT layer of width 64 over 17 tokens: the qkv, projection and MLP matmuls alone give
    # 2 * 17 * (3*64*64 + 64*64 + 2*64*256) per layer; the total must at least cover the two layers.
    assert info.gflops_image * 1e9 >= 2 * 2 * 17 * (4 * 64 * 64 + 2 * 64 * 256)
    assert info.gflops_prompt > 0


@pytest.mark.slow
def test_uncached_pretrained_described_from_architecture() -> None:
    info = describe_model("ViT-B-32:laion2b_s34b_b79k")
    assert not info.weights_loaded
    assert 150e6 < info.params_total < 152e6  # ViT-B/32 CLIP: 151.3M
    # Published: about 4.4 G multiply-adds per image (open_clip's profile table), so about 8.8 GFLOPs here;
    # a count that missed the attention projections (MultiheadAttention's fused path) would give about 5.9.
    assert 8.0 < info.gflops_image < 9.5
    assert 5.0 < info.gflops_prompt < 6.5  # 12 layers x 12 x 512^2 weights x 77 tokens x 2


def test_the_web_ui_model_tab_states_the_memory_clipzero_info_states(tiny_model_dir: Path, tiny_encoder: object,
                                                                     ) -> None:  # fmt: skip
    from types import SimpleNamespace

    from clipzero.modelinfo import format_bytes
    from clipzero.service.ui import _model_markdown  # the tab's own text, built without a server

    info = describe_model(str(tiny_model_dir))
    text = _model_markdown(SimpleNamespace(encoder=tiny_encoder))  # type: ignore[arg-type]
    for precision, size in info.memory_bytes.items():
        assert f"| {precision} | {format_bytes(size)} |" in text
