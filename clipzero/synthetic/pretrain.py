"""Contrastive pretraining of clipzero-shapes on the shapes world.

Usage::

    python -m clipzero.synthetic.pretrain --out DIR [--steps 3200] [--batch-size 128] [--seed 0]

Writes an open_clip model directory (``open_clip_config.json``, ``open_clip_model.safetensors`` in fp16) and
``training.json`` (the recipe, loss curve and timing). Reproducible from the seed: the data stream, the
initialisation and the schedule all derive from it. Held-out colour x shape combinations never appear.

The bundled weights came from four stages (see the model card in the README)::

    python -m clipzero.synthetic.pretrain --out s1 --steps 2400 --warmup 150 --hard-fraction 0
    python -m clipzero.synthetic.pretrain --init s1 --out s2 --steps 1500 --warmup 50 --lr 4e-4 --seed 1
    python -m clipzero.synthetic.pretrain --init s2 --out s3 --steps 1000 --warmup 30 --lr 3e-4 --seed 2 \
        --hard-fraction 0.7
    python -m clipzero.synthetic.pretrain --init s3 --out s4 --steps 1500 --warmup 50 --lr 2e-4 --seed 3
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .captions import caption
from .world import COLOURS, HELD_OUT, all_combinations, render, sample_scene

ARCH = "clipzero-shapes-vit"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, kept for familiarity
STD = (0.26862954, 0.26130258, 0.27577711)


def register_architecture() -> None:
    """Make clipzero's own open_clip architectures (``clipzero-shapes-vit``) known to open_clip."""
    from ..models import _open_clip

    _open_clip()


def to_pixels(images: list[Any], side: int) -> torch.Tensor:
    """PIL images -> normalised float tensor (n, 3, side, side), as the model's preprocess would give."""
    from PIL import Image

    arrays = [
        np.asarray(im if im.size == (side, side) else im.resize((side, side), Image.Resampling.BICUBIC))
        for im in images
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)  # (n, 3, H, W)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (batch - mean) / std


def batches(
    seed: int, batch_size: int, zh_fraction: float, tokenizer: Any, side: int = 64, hard_fraction: float = 0.5
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless, seeded stream of (pixels (b, 3, side, side), tokens (b, context)) pairs.

    In a random batch, colour alone tells most captions apart, so the contrastive loss barely needs shapes (a
    first model learned colour to 100% and shape to 71%). A ``hard_fraction`` of batches therefore draws from
    two colours only, where only the shapes (and counts, sizes, places) distinguish one caption from another.
    """
    rng = random.Random(seed)
    seen = [c for c in all_combinations() if c not in HELD_OUT]
    while True:
        allowed = None
        if rng.random() < hard_fraction:
            colours = rng.sample(list(COLOURS), 2)
            allowed = [c for c in seen if c[0] in colours]
        scenes = [sample_scene(rng, size=rng.choice((64, 64, 80, 96)), allowed=allowed) for _ in range(batch_size)]
        texts = [caption(s, rng, "zh" if rng.random() < zh_fraction else "en") for s in scenes]
        yield to_pixels([render(s) for s in scenes], side), tokenizer(texts)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        # No decay for gains, biases, embeddings of position/class and the temperature.
        (no_decay if param.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    out: Path,
    *,
    steps: int = 3200,
    batch_size: int = 128,
    lr: float = 1e-3,
    warmup: int = 150,
    weight_decay: float = 0.1,
    zh_fraction: float = 0.4,
    hard_fraction: float = 0.5,
    seed: int = 0,
    bf16: bool = True,
    progress: bool = True,
    log_every: int = 50,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train (from scratch, or continuing from the model directory ``init``) and save the model directory.

    Returns the training record; a continued run's record lists the earlier stages under ``stages``.
    """
    import open_clip
    from open_clip.loss import ClipLoss
    from safetensors.torch import save_file
    from tqdm import tqdm

    register_architecture()
    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH)
    earlier: list[dict[str, Any]] = []
    if init is not None:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(str(init / "open_clip_model.safetensors")).items()})
        previous = json.loads((init / "training.json").read_text(encoding="utf-8"))
        earlier = [*previous.pop("stages", []), previous]
    model.train()
    tokenizer = open_clip.get_tokenizer(ARCH)
    loss_fn = ClipLoss()
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    stream = batches(seed, batch_size, zh_fraction, tokenizer, hard_fraction=hard_fraction)
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    bar = tqdm(total=steps, disable=not progress, file=sys.stderr, unit="step")
    running, window = None, []
    for step in range(steps):
        pixels, tokens = next(stream)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            image_features, text_features, logit_scale = model(pixels, tokens)[:3]
        loss = loss_fn(image_features.float(), text_features.float(), logit_scale.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        window.append(value)
        if (step + 1) % log_every == 0 or step == steps - 1:
            curve.append((step + 1, round(sum(window) / len(window), 4)))  # mean loss over the last window
            window = []
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{running:.3f}", img_s=f"{(step + 1) * batch_size / elapsed:.0f}")
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    config = {
        "model_cfg": open_clip.get_model_config(ARCH),
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"), metadata={"arch": ARCH})
    record = {
        "arch": ARCH,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "zh_fraction": zh_fraction,
        "hard_fraction": hard_fraction,
        "bf16_autocast": bf16,
        "pairs_seen": steps * batch_size,
        "seconds": round(elapsed, 1),
        "pairs_per_second": round(steps * batch_size / elapsed, 1),
        "final_loss": curve[-1][1],
        "loss_curve": curve,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
    }
    if earlier:
        record["stages"] = [{k: v for k, v in stage.items() if k != "loss_curve"} for stage in earlier]
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain clipzero-shapes on the shapes world.")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--steps", type=int, default=3200, help="about 55 min on 2 CPU cores")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--zh-fraction", type=float, default=0.4, help="share of Chinese captions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    parser.add_argument("--hard-fraction", type=float, default=0.5, help="share of two-colour batches")
    parser.add_argument("--init", type=Path, help="continue from this model directory (a second stage)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    record = train(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        zh_fraction=args.zh_fraction,
        hard_fraction=args.hard_fraction,
        seed=args.seed,
        bf16=not args.no_bf16,
        progress=not args.quiet,
        init=args.init,
    )
    print(json.dumps({k: v for k, v in record.items() if k != "loss_curve"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
