"""What a model costs: parameters per tower, weight memory by precision, FLOPs per image and per prompt.

Memory is estimated the way one estimates an LLM's: parameters times bytes per parameter (a 7B model is 28 GB in
fp32, 14 GB in bf16, 7 GB in int8). For clipzero's int8 (dynamic quantization) only ``nn.Linear`` weights become
one byte; the rest stays fp32. Activations come on top and grow with the batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["ModelInfo", "describe_model"]


@dataclass(frozen=True)
class ModelInfo:
    """Sizes and costs of one model.

    Attributes:
        id: the model's canonical id.
        arch: its open_clip architecture.
        embed_dim: embedding length.
        image_size: input side in pixels.
        context_length: text context in tokens.
        params_image, params_text, params_total: parameter counts (total includes the logit scale and bias).
        memory_bytes: weight memory by precision (fp32, bf16, int8).
        gflops_image: GFLOPs to embed one image (a multiply-add counts as two).
        gflops_prompt: GFLOPs to embed one prompt at the full context length.
        weights_loaded: False when only the architecture was built (the weights are not cached here).
    """

    id: str
    arch: str
    embed_dim: int
    image_size: int
    context_length: int
    params_image: int
    params_text: int
    params_total: int
    memory_bytes: dict[str, int]
    gflops_image: float
    gflops_prompt: float
    weights_loaded: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _linear_weights(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if type(m) is torch.nn.Linear)


def _flops(fn: Any, *args: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    # With gradients enabled, nn.MultiheadAttention takes its plain path: its fused inference fast path is
    # invisible to the FLOP counter and would hide the attention projections.
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def memory_by_precision(model: torch.nn.Module) -> dict[str, int]:
    """Weight memory in bytes by precision (fp32, bf16, int8: Linear weights at one byte, the rest fp32): the one
    formula behind ``clipzero info`` and the web UI's Model tab."""
    total = _count(model)
    linear = _linear_weights(model)
    return {"fp32": 4 * total, "bf16": 2 * total, "int8": linear + 4 * (total - linear)}


def format_bytes(n: int) -> str:
    """``30.5 MB``, ``1.23 GB`` (decimal units, as disks and downloads count)."""
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def describe_model(spec: str | None = None) -> ModelInfo:
    """Measure a model's parameters, memory by precision and FLOPs.

    Works offline for any open_clip architecture: when the weights are not cached, the architecture is built
    with random weights (sizes and costs do not depend on the weights) and ``weights_loaded`` is False.

    Args:
        spec: a model spec, as for :func:`clipzero.load_model`; None for the configured default.

    Raises:
        ModelNotFoundError: the spec names nothing known.
    """
    from .config import load_settings
    from .models import build_model, canonical_id, is_cached, parse_spec

    parsed = parse_spec(spec or load_settings().model)
    # Sizes and costs do not depend on the weights: never download them just to describe a model.
    loaded = parsed.kind != "pretrained" or is_cached(parsed)
    model, preprocess, tokenizer, arch, model_id = build_model(parsed, load_weights=loaded)
    model.eval()
    visual: Any = model.visual
    total = _count(model)
    image = _count(visual)
    scalars = sum(p.numel() for name, p in model.named_parameters() if name.startswith("logit_"))
    size = visual.image_size
    side = int(size[0] if isinstance(size, (tuple, list)) else size)
    context = int(getattr(tokenizer, "context_length", 77))
    memory = memory_by_precision(model)
    from PIL import Image

    gflops_image = _flops(model.encode_image, preprocess(Image.new("RGB", (side, side)))[None])
    gflops_prompt = _flops(model.encode_text, tokenizer(["x " * context]))
    with torch.inference_mode():
        embed_dim = int(model.encode_text(tokenizer(["a"])).shape[-1])
    return ModelInfo(
        id=canonical_id(parsed, model_id),
        arch=arch,
        embed_dim=embed_dim,
        image_size=side,
        context_length=context,
        params_image=image,
        params_text=total - image - scalars,
        params_total=total,
        memory_bytes=memory,
        gflops_image=gflops_image,
        gflops_prompt=gflops_prompt,
        weights_loaded=loaded,
    )
