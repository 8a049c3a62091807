"""Batch tagging throughput, end to end from JPEG files on disk to results, against the usual ways.

Usage: python benchmarks/tagging_speed.py [--images 256] [--arch ViT-B-32] [--skip-transformers]

One run, the same 640x480 JPEG files and the same ViT-B-32 weights (random: speed does not depend on them):

  (a) a plain open_clip loop: open, preprocess and encode one image at a time, fp32
  (b) the Hugging Face transformers zero-shot-image-classification pipeline on an equivalent CLIPModel saved
      locally (skipped when transformers is not installed)
  (c) clipzero's tag_images with its defaults (precision picked for the CPU, batch 32, parallel decode)
  (d) clipzero in fp32, bf16 and int8, and the bundled clipzero-shapes model
  (e) the same model and settings through two doors: the Python API as the README shows it (``load_model(spec)``
      with nothing else said, then ``tag_images``) and the ``clipzero tag`` command (its own ``--json`` summary);
      both decide the precision by one rule (argument > CLIPZERO_PRECISION > config file > auto)

Each variant runs in its own process, so peak memory (max RSS) is its own, and is timed from after its model is
loaded (a one-off) to its last result. GFLOP/s is the image encoder's FLOPs
per image times images/s, against a matrix-multiply ceiling measured in the same run (bf16 and fp32).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ["a cat", "a dog", "a car", "a tree", "a house", "a person", "a bicycle", "a boat", "a flower", "a bird"]


def make_images(folder: Path, n: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        low = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)  # smooth, photo-like content compresses like photos
        image = Image.fromarray(low).resize((640, 480), Image.Resampling.BICUBIC)
        path = folder / f"{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def make_model(folder: Path, arch: str) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(arch)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": open_clip.get_model_config(arch), "preprocess_cfg": model.visual.preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))


def matmul_ceiling(dtype_name: str, trials: int = 5, budget_s: float = 1.0) -> float:
    """The best of ``trials`` timings of 2048x2048 matrix products, in GFLOP/s; each timing repeats the product for
    about ``budget_s`` seconds (where bf16 is emulated one product takes seconds, so once is enough)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a = torch.randn(2048, 2048, dtype=dtype)
    b = torch.randn(2048, 2048, dtype=dtype)
    start = time.perf_counter()
    a @ b  # warm-up, and the cost of one product
    reps = max(1, int(budget_s / max(time.perf_counter() - start, 1e-6)))
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * 2048**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


# -- variants, each run in a child process ---------------------------------------------------------------------
def plain_loop(paths: list[str], model_dir: Path) -> float:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        text = model.encode_text(tokenizer([f"a photo of {label}." for label in LABELS]), normalize=True)
        out = []
        for path in paths:
            image = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
            features = model.encode_image(image, normalize=True)
            out.append(int((100 * features @ text.T).softmax(-1).argmax()))
    return start


def transformers_pipeline(paths: list[str], model_dir: Path) -> float:
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=str(model_dir / "hf"), device="cpu")
    start = time.perf_counter()
    for path in paths:
        classifier(path, candidate_labels=LABELS)
    return start


def clipzero_tag(paths: list[str], model_spec: str, precision: str | None, out: Path) -> tuple[float, str]:
    from clipzero import load_model
    from clipzero.encoder import default_precision, resolve_device
    from clipzero.outputs import ResultWriter
    from clipzero.tagging import TagFailure, tag_images

    chosen = precision or default_precision(resolve_device("auto"))
    encoder = load_model(model_spec, device="cpu", precision=chosen)
    start = time.perf_counter()
    writer = ResultWriter(out)
    for result in tag_images(paths, LABELS, model=encoder, templates="photo"):
        (writer.write_error if isinstance(result, TagFailure) else writer.write)(result.to_dict())
    writer.close()
    return start, chosen


def python_api(paths: list[str], model_spec: str, out: Path) -> tuple[float, str]:
    """The README's Python path: the model loaded with nothing but its spec, then tag_images."""
    import clipzero
    from clipzero.outputs import ResultWriter
    from clipzero.tagging import TagFailure

    encoder = clipzero.load_model(model_spec)
    start = time.perf_counter()
    writer = ResultWriter(out)
    for result in clipzero.tag_images(paths, LABELS, model=encoder, templates="photo"):
        (writer.write_error if isinstance(result, TagFailure) else writer.write)(result.to_dict())
    writer.close()
    return start, encoder.precision


def command_line(paths: list[str], model_spec: str, out: Path) -> dict[str, float | str]:
    """``clipzero tag`` on the same files; its --json summary times the tagging (after the model loaded)."""
    done = subprocess.run([sys.executable, "-m", "clipzero", "tag", *paths, "--labels", *LABELS, "--model",
                           model_spec, "--templates", "photo", "--out", str(out), "--json", "--quiet"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    summary = json.loads(done.stdout)
    return {"images_per_s": float(summary["images_per_s"]), "precision": str(summary["precision"])}


def export_hf(model_dir: Path, arch: str) -> None:
    """An equivalent transformers CLIPModel (same sizes), with a tokenizer built from open_clip's own BPE files."""
    import open_clip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    cfg = open_clip.get_model_config(arch)
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    config = CLIPConfig(
        text_config={
            "hidden_size": text["width"],
            "num_hidden_layers": text["layers"],
            "num_attention_heads": text["heads"],
            "intermediate_size": 4 * text["width"],
            "max_position_embeddings": text["context_length"],
            "vocab_size": text["vocab_size"],
        },
        vision_config={
            "hidden_size": vision["width"],
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["width"] // 64,
            "intermediate_size": 4 * vision["width"],
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
        },
        projection_dim=cfg["embed_dim"],
    )
    hf = model_dir / "hf"
    CLIPModel(config).save_pretrained(hf)
    bpe = open_clip.tokenizer.SimpleTokenizer()
    # transformers names the two special tokens differently; unrenamed they would be appended past the vocabulary
    # and the text tower's embedding lookup would fail with "index out of range"
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (hf / "vocab.json").write_text(json.dumps({renamed.get(k, k): v for k, v in bpe.encoder.items()}))
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (hf / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(str(hf / "vocab.json"), str(hf / "merges.txt"), model_max_length=text["context_length"])
    CLIPProcessor(CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=224), tokenizer).save_pretrained(hf)


def _peak_rss() -> int:
    """This process's peak resident memory. (ru_maxrss would include the parent's from before exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    if args.variant == "ceiling":  # measured in a clean process of its own, like the variants
        from clipzero.encoder import native_bf16

        # Where bf16 is emulated one 2048x2048 product takes half a minute and bf16 is never the choice: skipped.
        kinds = ("bf16", "fp32") if native_bf16() else ("fp32",)
        print(json.dumps({name: matmul_ceiling(name) for name in kinds}))
        return
    paths = json.loads(Path(args.paths_file).read_text())
    note = ""  # each variant times from after its model is loaded to its last result
    if args.variant == "cli":
        print(json.dumps({**command_line(paths, args.model_dir, Path(args.work) / "cli.jsonl"), "peak_bytes": 0}))
        return
    if args.variant == "python":
        start, note = python_api(paths, args.model_dir, Path(args.work) / "python.jsonl")
    elif args.variant == "plain":
        start = plain_loop(paths, Path(args.model_dir))
    elif args.variant == "transformers":
        start = transformers_pipeline(paths, Path(args.model_dir))
    else:
        spec = "clipzero-shapes" if args.variant == "shapes" else args.model_dir
        precision = None if args.variant in ("default", "shapes") else args.variant
        start, note = clipzero_tag(paths, spec, precision, Path(args.work) / f"{args.variant}.jsonl")
    elapsed = time.perf_counter() - start
    peak = _peak_rss()
    print(json.dumps({"images_per_s": len(paths) / elapsed, "peak_bytes": peak, "precision": note}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--only", metavar="V,V", help="run only these variants (plain, transformers, default, fp32, "
                        "bf16, int8, shapes, python, cli); the plain loop always runs, as the baseline")  # fmt: skip
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--paths-file", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="clipzero-tagbench-"))
    paths = make_images(work / "images", args.images)
    (work / "paths.json").write_text(json.dumps(paths))
    make_model(work / "model", args.arch)
    from clipzero.modelinfo import describe_model

    gflops = describe_model(str(work / "model")).gflops_image
    variants = ["plain"]
    try:
        import transformers  # noqa: F401

        if not args.skip_transformers:
            export_hf(work / "model", args.arch)
            variants.append("transformers")
    except ImportError:
        print("(b) skipped: transformers is not installed (pip install transformers)")
    variants += ["default", "fp32", "bf16", "int8", "shapes", "python", "cli"]
    if args.only:
        wanted = set(args.only.split(","))
        variants = [v for v in variants if v == "plain" or v in wanted]
    ceilings = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--variant", "ceiling", "--paths-file", "-"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    bf16 = f"{ceilings['bf16']:.0f} GFLOP/s" if "bf16" in ceilings else "- (emulated on this CPU)"
    print(
        f"{args.images} JPEG files 640x480, {args.arch} ({gflops:.2f} GFLOP/image), {os.cpu_count()} cores; "
        f"matmul ceiling bf16 {bf16}, fp32 {ceilings['fp32']:.0f} GFLOP/s"
    )
    print(f"{'variant':<34} {'images/s':>9} {'vs (a)':>7} {'peak MB':>8} {'GFLOP/s':>8} {'of ceiling':>10}")
    base = None
    names = {
        "plain": "(a) open_clip loop, fp32",
        "transformers": "(b) transformers pipeline",
        "default": "(c) clipzero tag defaults",
        "fp32": "(d) clipzero fp32",
        "bf16": "(d) clipzero bf16",
        "int8": "(d) clipzero int8",
        "shapes": "clipzero-shapes (bundled)",
        "python": "(e) Python API as README",
        "cli": "(e) clipzero tag command",
    }
    for variant in variants:
        env = dict(os.environ)
        if variant not in ("plain", "transformers"):  # what the clipzero command sets before torch starts
            env.setdefault("OMP_WAIT_POLICY", "ACTIVE")
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--paths-file",
                str(work / "paths.json"),
                "--model-dir",
                str(work / "model"),
                "--work",
                str(work),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            print(f"{names[variant]:<34} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        speed = result["images_per_s"]
        base = base or speed
        label = names[variant] + (f" [{result['precision']}]" if variant in ("default", "python", "cli") else "")
        if variant == "shapes":
            print(f"{label:<34} {speed:9.1f} {speed / base:6.1f}x {result['peak_bytes'] / 1e6:8.0f}")
            continue
        achieved = speed * gflops
        precision = result["precision"] or "fp32"
        share = f"{achieved / ceilings[precision]:9.0%}" if precision in ceilings else "        -"  # no int8 ceiling
        peak = f"{result['peak_bytes'] / 1e6:8.0f}" if result["peak_bytes"] else "       -"  # the CLI: its own process
        print(f"{label:<34} {speed:9.1f} {speed / base:6.1f}x {peak} {achieved:8.0f} {share}")


if __name__ == "__main__":
    main()
