"""Text encoding at the length it needs against open_clip's own full-context ``encode_text``, in one process.

Usage: python benchmarks/text_speed.py [--labels 40] [--json]

Prompts: the ``ensemble-en`` templates (24) filled with ``--labels`` ImageNet class names. Models: the bundled
clipzero-shapes, and ViT-B-32's architecture with random weights (speed does not depend on the weights, which cannot
be downloaded here), at fp32. Both paths encode the same prompts in batches of 256; the baseline is
``model.encode_text`` over the full context, the figure is clipzero's ``Encoder.encode_texts``. Reported: prompts/s
of each, the ratio, and the largest absolute difference between their L2-normalised embeddings.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch


def _baseline(encoder: object, prompts: list[str], batch_size: int = 256) -> np.ndarray:
    rows = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            tokens = encoder.tokenizer(prompts[start : start + batch_size])  # type: ignore[attr-defined]
            vectors = encoder.model.encode_text(tokens)  # type: ignore[attr-defined]
            rows.append(torch.nn.functional.normalize(vectors.float(), dim=-1).numpy())
    return np.concatenate(rows)


def _timed(fn: object, *args: object, repeat: int = 2) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from clipzero import load_model
    from clipzero.encoder import Encoder
    from clipzero.models import open_clip_module
    from clipzero.prompts import load_templates

    templates = load_templates("ensemble-en")
    prompts = [p for label in IMAGENET_CLASSNAMES[: args.labels] for p in templates.prompts_for(label)]
    open_clip = open_clip_module()
    torch.manual_seed(0)
    models = {
        "clipzero-shapes": load_model("clipzero-shapes", device="cpu", precision="fp32"),
        "ViT-B-32 (random weights)": Encoder.from_open_clip(open_clip.create_model("ViT-B-32").eval(), lambda i: i,
                                                            open_clip.get_tokenizer("ViT-B-32"), id="ViT-B-32"),
    }  # fmt: skip
    results = {}
    for name, encoder in models.items():
        encoder.encode_texts(prompts[:8])  # the one-time exactness probe, outside the timing
        full_s, full = _timed(_baseline, encoder, prompts)
        ours_s, ours = _timed(encoder.encode_texts, prompts)
        results[name] = {
            "prompts": len(prompts),
            "baseline_prompts_per_s": round(len(prompts) / full_s, 1),
            "clipzero_prompts_per_s": round(len(prompts) / ours_s, 1),
            "speedup": round(full_s / ours_s, 2),
            "max_abs_difference": float(np.abs(np.asarray(ours) - np.asarray(full)).max()),
            "trimmed": encoder.trims_text,
        }
        if not args.json:
            r = results[name]
            print(f"{name:<28} open_clip {r['baseline_prompts_per_s']:8.1f} prompts/s   clipzero "
                  f"{r['clipzero_prompts_per_s']:8.1f} prompts/s   {r['speedup']:5.2f}x   max |diff| "
                  f"{r['max_abs_difference']:.1e}", flush=True)  # fmt: skip
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
