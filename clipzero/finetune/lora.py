"""LoRA on the image tower, with peft: frozen weights plus a trainable low-rank bypass ``B A``.

``A`` starts Gaussian and ``B`` at zero, so training starts exactly from the pretrained model. The adapters sit on
the image tower's attention (peft wraps ``nn.MultiheadAttention`` as a whole: wrapping its ``out_proj`` alone would
do nothing, because the attention forward reads that weight directly) and its MLP; the text tower is untouched.
The classifier is the zero-shot one: image embeddings against the label prompt embeddings, trained with
cross-entropy, so a trained adapter still works with any labels, and best with the ones it was trained on.

An adapter is saved with peft's ``save_pretrained`` plus ``clipzero-adapter.json`` (the base model, labels and
training record), and used with ``--adapter DIR`` wherever a model is loaded; it is merged into the weights at load
time, so inference costs what the base model costs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AdapterError

__all__ = ["DEFAULT_TARGET", "LoraSettings", "adapter_digest", "add_lora", "merge_adapter", "train_lora"]

DEFAULT_TARGET = r"visual\.transformer\.resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)"
META = "clipzero-adapter.json"


class LoraSettings:
    """Rank, scaling and optimisation settings of a LoRA run."""

    def __init__(
        self,
        rank: int = 8,
        alpha: int = 16,
        dropout: float = 0.0,
        lr: float = 1e-3,
        steps: int = 300,
        batch_size: int = 32,
        weight_decay: float = 0.01,
        target: str = DEFAULT_TARGET,
        bf16: bool | None = None,
        seed: int = 0,
        evaluations: int = 5,
    ) -> None:
        if rank < 1:
            raise AdapterError(f"LoRA rank must be at least 1, got {rank}")
        if steps < 1 or batch_size < 1:
            raise AdapterError("LoRA steps and batch size must be at least 1")
        self.rank, self.alpha, self.dropout, self.lr = rank, alpha, dropout, lr
        self.steps, self.batch_size, self.weight_decay = steps, batch_size, weight_decay
        if bf16 is None:  # autocast only where the CPU has native bf16: emulated, it is ~10x slower than fp32
            from ..encoder import native_bf16

            bf16 = native_bf16()
        self.target, self.bf16, self.seed, self.evaluations = target, bf16, seed, evaluations

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def add_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap an open_clip model with LoRA adapters on the modules ``settings.target`` matches; freeze the rest."""
    import peft

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target,
        bias="none",
    )
    wrapped = peft.get_peft_model(model, config)
    for name, parameter in wrapped.named_parameters():
        parameter.requires_grad_("lora_" in name)
    if not any(p.requires_grad for p in wrapped.parameters()):
        raise AdapterError(f"LoRA target {settings.target!r} matches no module of this model")
    return wrapped


def _encode(model: Any, pixels: Any) -> Any:
    features = model.encode_image(pixels)
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def train_lora(
    encoder: Any,
    pixels: Any,
    labels: Sequence[int],
    text_weights: np.ndarray,
    settings: LoraSettings,
    *,
    select: tuple[Any, Sequence[int]] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train LoRA adapters on the image tower of an fp32 encoder.

    Args:
        encoder: an fp32 :class:`~clipzero.encoder.Encoder` (its model is wrapped in place).
        pixels: preprocessed training images (n, 3, H, W).
        labels: their class indices.
        text_weights: (n_classes, dim) L2-normalised label prompt embeddings (the zero-shot classifier).
        settings: rank, alpha, learning rate, steps...
        select: (pixels, labels) to score the adapter on during training; the best-scoring state is kept.
        progress: show a progress bar with loss and images/s.

    Returns:
        (the peft-wrapped model, a training record).
    """
    import torch
    from tqdm import tqdm

    if encoder.precision != "fp32":
        raise AdapterError(f"LoRA trains an fp32 model (bf16 autocast inside); this one is {encoder.precision}")
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    model = add_lora(encoder.model, settings)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, settings.steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, settings.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    text = torch.as_tensor(np.asarray(text_weights, np.float32))
    scale = float(encoder.logit_scale)
    targets = torch.as_tensor(np.asarray(labels, np.int64))
    n = int(pixels.shape[0])
    generator = torch.Generator().manual_seed(settings.seed)
    checkpoints = {max(1, round(settings.steps * (i + 1) / settings.evaluations)) for i in range(settings.evaluations)}

    def score_select() -> float:
        assert select is not None
        model.eval()
        correct = 0
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            for start in range(0, int(select[0].shape[0]), 128):
                chunk = select[0][start : start + 128]
                predicted = (_encode(model, chunk).float() @ text.T).argmax(dim=1)
                correct += int((predicted == torch.as_tensor(np.asarray(select[1][start : start + 128]))).sum())
        model.train()
        return correct / max(1, int(select[0].shape[0]))

    record: dict[str, Any] = {"settings": settings.to_dict(), "train_images": n, "curve": []}
    best_state: dict[str, Any] | None = None
    best_score = score_select() if select is not None and len(select[1]) else None
    record["select_accuracy_before"] = best_score
    model.train()
    bar = tqdm(total=settings.steps, disable=not progress, unit="step", desc="LoRA")
    started = time.perf_counter()
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in range(settings.steps):
        if cursor + settings.batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        rows = order[cursor : cursor + settings.batch_size]
        cursor += settings.batch_size
        batch = pixels[rows]
        flip = torch.rand(len(rows), generator=generator) < 0.5  # the one augmentation: mirror half the batch
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            logits = scale * _encode(model, batch).float() @ text.T
        loss = torch.nn.functional.cross_entropy(logits, targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{(step + 1) * len(rows) / elapsed:.0f}")
        bar.update(1)
        if (step + 1) % max(1, settings.steps // 20) == 0:
            record["curve"].append([step + 1, round(float(loss.item()), 4)])
        if best_score is not None and step + 1 in checkpoints:
            current = score_select()
            if log:
                log(f"step {step + 1}: selection accuracy {current:.3f}")
            if current >= best_score:
                best_score = current
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    elif best_score is not None:  # never beat the untrained model on the selection set: keep it untrained
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.data.zero_()
    model.eval()
    record.update(
        seconds=round(time.perf_counter() - started, 1),
        select_accuracy=best_score,
        images_per_second=round(settings.steps * settings.batch_size / max(1e-9, time.perf_counter() - started), 1),
    )
    return model, record


def save_adapter(
    model: Any,
    folder: str | os.PathLike[str],
    *,
    base_id: str,
    base_spec: str,
    classes: Sequence[str],
    templates: str,
    record: dict[str, Any],
) -> Path:
    """Write the adapter (peft's save_pretrained) and clipzero's record of what it is for."""
    target = Path(folder)
    model.save_pretrained(str(target))
    meta = {
        "format": "clipzero-lora/1",
        "base_model": base_id,
        "base_spec": base_spec,
        "classes": list(classes),
        "templates": templates,
        "training": record,
    }
    (target / META).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    return target


def read_adapter_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    source = Path(folder)
    if not (source / "adapter_config.json").is_file():
        raise AdapterError(f"adapter {source}: no adapter_config.json (not a saved LoRA adapter folder)")
    meta_file = source / META
    return json.loads(meta_file.read_text()) if meta_file.is_file() else {}


def adapter_digest(folder: str | os.PathLike[str]) -> str:
    """A short hash of the adapter's config and weights: part of the adapted model's id, so caches never mix."""
    source = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(source.iterdir()):
        if path.name.startswith("adapter_") and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def merge_adapter(model: Any, folder: str | os.PathLike[str], base_id: str) -> Any:
    """Load a saved adapter onto an fp32 open_clip model and merge it into the weights.

    Raises:
        AdapterError: not an adapter folder, made for another model, or unreadable.
    """
    meta = read_adapter_meta(folder)
    expected = meta.get("base_model")
    if expected and expected != base_id:
        raise AdapterError(f"adapter {folder} was trained on {expected!r}, not on {base_id!r}")
    try:
        import peft

        wrapped = peft.PeftModel.from_pretrained(model, str(folder))
        merged = wrapped.merge_and_unload()
    except ImportError as exc:
        raise AdapterError("LoRA adapters need the finetune extra: pip install 'clipzero[finetune]'") from exc
    except Exception as exc:
        raise AdapterError(f"adapter {folder}: cannot apply it: {type(exc).__name__}: {exc}") from exc
    return merged.eval()
