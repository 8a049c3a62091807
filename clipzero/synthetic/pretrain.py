"""Contrastive pretraining of clipzero-shapes on the shapes world.

Usage::

    python -m clipzero.synthetic.pretrain --out DIR [--steps 3200] [--batch-size 128] [--seed 0]

Writes an open_clip model directory (``open_clip_config.json``, ``open_clip_model.safetensors`` in fp16) and
``training.json`` (the recipe, loss curve and timing). Reproducible from the seed: the data stream, the
initialisation and the schedule all derive from it. Held-out colour x shape combinations never appear.

The defaults are the recipe of the bundled weights: one run from scratch, 3200 steps, 49 minutes on 2 CPU cores.
Easy scenes (lone, larger objects on plain backgrounds) for the first 35% of the steps, then the full world, with
two-colour batches rising to half between 40% and 55% of the run. ``--eval-every N`` prints zero-shot accuracy
as it goes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .captions import caption
from .world import COLOURS, HELD_OUT, Scene, all_combinations, render, sample_scene

ARCH = "clipzero-shapes-vit"
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, kept for familiarity
STD = (0.26862954, 0.26130258, 0.27577711)
EASY_BACKGROUNDS = ("flat", "gradient")


def register_architecture() -> None:
    """Make clipzero's own open_clip architectures (``clipzero-shapes-vit``) known to open_clip."""
    from ..models import open_clip_module

    open_clip_module()


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


def content_key(scene: Scene) -> tuple[tuple[str, str], ...]:
    """What a caption can say about a scene's objects, order aside: the multiset of (colour, shape)."""
    return tuple(sorted((o.colour, o.shape) for o in scene.objects))


def hard_fraction_at(step: int, steps: int, final: float, ramp: tuple[float, float]) -> float:
    """The share of two-colour batches at ``step``: 0 before ``ramp[0]`` of the run, ``final`` after ``ramp[1]``,
    linear in between (a step at ``ramp[0]`` when the two are equal)."""
    start, end = ramp
    progress = step / max(1, steps)
    if progress < start:
        return 0.0
    if end <= start or progress >= end:
        return final
    return final * (progress - start) / (end - start)


def batches(
    seed: int,
    batch_size: int,
    zh_fraction: float,
    tokenizer: Any,
    side: int = 64,
    *,
    hard_fraction: Callable[[int], float],
    distinct: bool = False,
    easy_batches: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless, seeded stream of (pixels (b, 3, side, side), tokens (b, context)) pairs.

    In a random batch, colour alone tells most captions apart, so the contrastive loss barely needs shapes (a
    first model learned colour to 100% and shape to 71%). A share of batches, ``hard_fraction(batch number)``
    (see :func:`hard_fraction_at`), therefore draws from two colours only, where only the shapes (and
    counts, sizes, places) distinguish one caption from another.

    The first ``easy_batches`` batches are easy scenes (see :func:`batch_scenes`): lone, larger objects on plain
    backgrounds. From scratch, shape is learned there several times faster than in the full world (a pilot of 500
    easy steps reached 32% shape accuracy; 700 steps of the full world stayed at chance, 16%).

    With ``distinct``, no two scenes of a batch hold the same objects. The contrastive loss takes every other
    caption in the batch as a negative, so two "red circle" images push each other's caption away although it
    says the same thing. A two-colour batch has only 14 single-object combinations, so most of its negatives are
    such false ones. It is off by default: in a pilot it lowered the loss but not the accuracy.
    """
    rng = random.Random(seed)
    number = 0
    while True:
        fraction = hard_fraction(number)
        number += 1
        easy = number <= easy_batches
        scenes = batch_scenes(rng, batch_size, hard=rng.random() < fraction, distinct=distinct and not easy, easy=easy)
        texts = [caption(s, rng, "zh" if rng.random() < zh_fraction else "en") for s in scenes]
        yield to_pixels([render(s) for s in scenes], side), tokenizer(texts)


def batch_scenes(
    rng: random.Random, batch_size: int, *, hard: bool, distinct: bool = False, easy: bool = False
) -> list[Scene]:
    """One batch of scenes from seen combinations: of two colours only when ``hard``; with ``distinct``, no two
    holding the same objects (see :func:`batches`); with ``easy``, lone medium or large objects drawn at 64 px on
    flat or gradient backgrounds, where shape is easiest to see."""
    allowed = [c for c in all_combinations() if c not in HELD_OUT]
    if hard:
        colours = rng.sample(list(COLOURS), 2)
        allowed = [c for c in allowed if c[0] in colours]
    scenes: list[Scene] = []
    keys: set[tuple[tuple[str, str], ...]] = set()
    while len(scenes) < batch_size:
        if easy:
            scene = sample_scene(
                rng, size=64, n_objects=1, allowed=allowed, backgrounds=EASY_BACKGROUNDS, sizes=("medium", "large")
            )
        else:
            scene = sample_scene(rng, size=rng.choice((64, 64, 80, 96)), allowed=allowed)
        key = content_key(scene)
        if distinct and key in keys:
            continue
        keys.add(key)
        scenes.append(scene)
    return scenes


_evaluation_ids = itertools.count(1)


def evaluate_during_training(
    model: torch.nn.Module, tokenizer: Any, side: int = 64, per_combo: int = 3
) -> dict[str, float]:
    """Zero-shot top-1 (seen en, held-out en, seen zh) of the model being trained; leaves it in train mode."""
    from ..encoder import Encoder
    from .evaluate import shapes_accuracy

    try:
        # A fresh id each time: label embeddings are cached per model id in the process, and these weights change.
        encoder = Encoder(
            model, lambda image: to_pixels([image], side)[0], tokenizer, id=f"{ARCH}@training-{next(_evaluation_ids)}"
        )
        return {
            name: round(
                shapes_accuracy(
                    encoder, split=split, language=language, templates=templates, per_combo=per_combo, label_cache=False
                ).value,
                4,
            )
            for name, split, language, templates in (
                ("seen_en", "seen", "en", "photo"),
                ("held_out_en", "held-out", "en", "photo"),
                ("seen_zh", "seen", "zh", "photo-zh"),
            )
        }
    finally:
        model.train()


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
    hard_ramp: tuple[float, float] = (0.4, 0.55),
    distinct: bool = False,
    easy_until: float = 0.35,
    seed: int = 0,
    bf16: bool = True,
    progress: bool = True,
    log_every: int = 50,
    eval_every: int = 0,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train (from scratch, or continuing from the model directory ``init``) and save the model directory.

    A curriculum: the first ``easy_until`` of the run draws easy scenes, where shape is easiest to see; then the
    full world. The share of two-colour batches follows :func:`hard_fraction_at`: none at first, then rising to
    ``hard_fraction`` (from scratch, two-colour batches from the first step stall learning).
    ``eval_every`` > 0 measures zero-shot accuracy every that many steps (a few seconds each), into the record.

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
    stream = batches(
        seed,
        batch_size,
        zh_fraction,
        tokenizer,
        hard_fraction=lambda number: hard_fraction_at(number, steps, hard_fraction, hard_ramp),
        distinct=distinct,
        easy_batches=round(easy_until * steps),
    )
    curve: list[tuple[int, float]] = []
    evals: list[dict[str, Any]] = []
    eval_seconds = 0.0
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
        if eval_every and ((step + 1) % eval_every == 0 or step == steps - 1):
            began = time.perf_counter()
            scores = evaluate_during_training(model, tokenizer)
            eval_seconds += time.perf_counter() - began
            evals.append({"step": step + 1, **scores})
            bar.write(f"step {step + 1}: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in scores.items()))
        elapsed = time.perf_counter() - start - eval_seconds
        bar.set_postfix(loss=f"{running:.3f}", img_s=f"{(step + 1) * batch_size / elapsed:.0f}")
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - start - eval_seconds

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
        "hard_ramp": list(hard_ramp),
        "distinct_batches": distinct,
        "easy_until": easy_until,
        "bf16_autocast": bf16,
        "pairs_seen": steps * batch_size,
        "seconds": round(elapsed, 1),
        "pairs_per_second": round(steps * batch_size / elapsed, 1),
        "final_loss": curve[-1][1],
        "loss_curve": curve,
        **({"evals": evals, "eval_seconds": round(eval_seconds, 1)} if evals else {}),
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
    parser.add_argument("--steps", type=int, default=3200, help="about 50 min on 2 CPU cores")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--zh-fraction", type=float, default=0.4, help="share of Chinese captions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    parser.add_argument("--hard-fraction", type=float, default=0.5, help="final share of two-colour batches")
    parser.add_argument(
        "--hard-ramp",
        type=float,
        nargs=2,
        default=(0.4, 0.55),
        metavar=("START", "END"),
        help="fractions of the run where two-colour batches start and reach --hard-fraction (0 0: from the start)",
    )
    parser.add_argument(
        "--distinct", action="store_true", help="no two scenes of a batch with the same objects (no false negatives)"
    )
    parser.add_argument(
        "--easy-until", type=float, default=0.35, help="fraction of the run drawn from easy scenes (curriculum)"
    )
    parser.add_argument("--eval-every", type=int, default=0, help="measure zero-shot accuracy every N steps")
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
        hard_ramp=tuple(args.hard_ramp),
        distinct=args.distinct,
        easy_until=args.easy_until,
        eval_every=args.eval_every,
        seed=args.seed,
        bf16=not args.no_bf16,
        progress=not args.quiet,
        init=args.init,
    )
    print(json.dumps({k: v for k, v in record.items() if k != "loss_curve"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
