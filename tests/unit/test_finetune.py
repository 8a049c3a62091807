"""Adaptation: datasets and few-shot sampling, linear probe, cache adapter, LoRA, metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from clipzero.errors import AdapterError, DatasetError
from clipzero.finetune.data import Example, LabeledSet, evaluation_splits, few_shot, load_labeled, readable_class_name
from clipzero.synthetic.examples import EXAMPLES
from tests.conftest import write_pictures

COMBOS = EXAMPLES  # 8 colour x shape classes, one per shape


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-class outline-style shapes task (the bundled model's weak spot) with train/val/test folders."""
    from clipzero.synthetic.tasks import write_task

    root = tmp_path_factory.mktemp("task")
    write_task(root, style="outline", combos=COMBOS, per_split={"train": 12, "val": 6, "test": 10}, seed=3)
    return root


@pytest.fixture(scope="module")
def shapes() -> object:
    from clipzero import load_model

    return load_model("clipzero-shapes", device="cpu")


# -- data -------------------------------------------------------------------------------------------------------
def test_folder_dataset_splits_and_readable_names(task: Path) -> None:
    data = load_labeled(task)
    assert set(data.splits) == {"train", "validation", "test"}
    assert len(data.splits["train"]) == 8 * 12 and len(data.splits["test"]) == 8 * 10
    assert "red circle" in data.classes and all("_" not in c for c in data.classes)
    red = data.classes.index("red circle")
    assert all("red_circle" in e.path for e in data.splits["train"] if e.label == red)


def test_wordnet_folders_get_readable_names(tmp_path: Path) -> None:
    for wnid in ("n01440764", "n02102040", "n99999999"):
        write_pictures(tmp_path / "data" / wnid, 2)
    data = load_labeled(tmp_path / "data")
    assert data.classes == ["tench", "English Springer Spaniel", "n99999999"]
    assert data.folder_names == ["n01440764", "n02102040", "n99999999"]
    assert readable_class_name("golden_retriever") == "golden retriever"


def test_missing_folder_and_flat_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_labeled(tmp_path / "nope")
    with pytest.raises(DatasetError):
        load_labeled(tmp_path)  # empty


def test_uncached_hub_dataset_fails_fast_offline() -> None:
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=r"frgfm/imagenette:320px.*cannot be reached"):
        load_labeled("frgfm/imagenette:320px")
    assert time.perf_counter() - start < 5


def test_hub_dataset_written_out_once_then_read_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from PIL import Image

    real_load = datasets.load_dataset

    def fake_hub_load(repo: str, config: str | None = None, **kwargs: object) -> datasets.DatasetDict:
        if repo == "imagefolder":
            return real_load(repo, **kwargs)  # type: ignore[no-any-return]
        assert (repo, config) == ("someone/tiny-set", None)
        images = [Image.new("RGB", (12, 12), (i * 40, 0, 0)) for i in range(4)]
        features = datasets.Features(
            {"img": datasets.Image(), "label": datasets.ClassLabel(names=["n01440764", "cat"])}
        )
        split = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 0, 1]}, features=features)
        return datasets.DatasetDict({"train": split, "validation": split})

    with pytest.MonkeyPatch.context() as hub:
        hub.setattr("clipzero.hub.probe", lambda url, timeout=3.0: None)
        hub.setattr(datasets, "load_dataset", fake_hub_load)
        first = load_labeled("someone/tiny-set")
    assert first.classes == ["tench", "cat"]
    assert len(first.splits["train"]) == 4 and len(first.splits["validation"]) == 4
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is out of reach again: the written-out copy is used
    again = load_labeled("someone/tiny-set")
    assert again.classes == first.classes
    assert [e.path for e in again.splits["train"]] == [e.path for e in first.splits["train"]]


def test_few_shot_is_deterministic_and_per_class() -> None:
    examples = [Example(f"/x/{c}/{i}.png", c) for c in range(5) for i in range(30)]
    a = few_shot(examples, 4, seed=1)
    assert a == few_shot(list(reversed(examples)), 4, seed=1)  # input order does not matter
    assert [e.label for e in a].count(3) == 4 and len(a) == 20
    assert a != few_shot(examples, 4, seed=2)
    small = [Example("/y/a.png", 0), Example("/y/b.png", 1), Example("/y/c.png", 1)]
    assert len(few_shot(small, 4)) == 3  # a class with fewer keeps all it has


def test_evaluation_splits_never_overlap(task: Path) -> None:
    data = load_labeled(task)
    splits = evaluation_splits(data, shots=5, seed=0)
    shots, select, test = ({e.path for e in s} for s in (splits.shots, splits.select, splits.test))
    assert len(shots) == 40 and len(select) == 40 and splits.test_source == "test"
    assert not shots & select and not shots & test and not select & test
    only_train = LabeledSet("t", data.classes, {"train": data.splits["train"]})
    carved = evaluation_splits(only_train, shots=5, seed=0)
    assert carved.test_source == "rest of train" and len(carved.test) == 8 * 12 - 80
    assert not {e.path for e in carved.test} & {e.path for e in carved.shots + carved.select}


# -- metrics ----------------------------------------------------------------------------------------------------
def test_metrics_on_a_hand_made_case() -> None:
    from clipzero.finetune.metrics import evaluate_probabilities, expected_calibration_error

    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],  # true 0: right, confident
            [0.6, 0.3, 0.1],  # true 1: wrong (second)
            [0.2, 0.2, 0.6],  # true 2: right
            [0.5, 0.1, 0.4],  # true 2: wrong (second)
        ]
    )
    truth = [0, 1, 2, 2]
    report = evaluate_probabilities(probabilities, truth, ["a", "b", "c"])
    assert report["top1"] == 0.5
    assert report["top5"] == 1.0
    assert report["per_class_recall"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert report["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    # bins: 0.9 (right) | 0.6 (wrong), 0.6 (right) | 0.5 (wrong): |1-.9|/4 + 2*|.5-.6|/4 + |0-.5|/4
    assert expected_calibration_error(probabilities, np.array(truth)) == pytest.approx(0.025 + 0.05 + 0.125)


# -- linear probe and cache adapter -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded(task: Path, shapes: object) -> tuple[LabeledSet, object, object, object]:
    """The task, and its shots (8 per class), selection and test images embedded by the bundled model."""
    from clipzero.finetune.run import embed_examples

    data = load_labeled(task)
    splits = evaluation_splits(data, shots=8, seed=0)
    train, select, test = (embed_examples(shapes, s) for s in (splits.shots, splits.select, splits.test))  # type: ignore[arg-type]
    return data, train, select, test


def test_probe_learns_and_round_trips(embedded: tuple, shapes: object, tmp_path: Path) -> None:
    from clipzero.finetune.heads import load_head
    from clipzero.finetune.linear_probe import LinearHead
    from clipzero.finetune.run import fit_probe

    data, train, select, test = embedded
    head = fit_probe(shapes, train, data.classes, select=select, templates="photo")  # type: ignore[arg-type]
    assert head.info["penalty"] in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    head_accuracy = float((head.predict(test.vectors) == test.labels).mean())
    from clipzero.zeroshot import ZeroShotClassifier

    zero_shot = ZeroShotClassifier(shapes, data.classes, templates="photo")  # type: ignore[arg-type]
    zs_accuracy = float((zero_shot.logits(test.vectors)[0].argmax(1) == test.labels).mean())
    assert head_accuracy > zs_accuracy + 0.1
    path = head.save(tmp_path / "head.safetensors")
    loaded = LinearHead.load(path)
    assert loaded.classes == head.classes and loaded.model_id == shapes.id  # type: ignore[attr-defined]
    np.testing.assert_array_equal(loaded.logits(test.vectors), head.logits(test.vectors))
    classifier = load_head(path, shapes)  # type: ignore[arg-type]
    predictions = classifier.predict_embeddings(test.vectors, test.paths, top_k=3)
    assert [p.label for p in predictions] == [head.classes[i] for i in head.predict(test.vectors)]


def test_head_for_another_model_is_refused(tmp_path: Path, shapes: object, tiny_encoder: object) -> None:
    from clipzero.finetune.heads import load_head
    from clipzero.finetune.linear_probe import LinearHead

    dim = shapes.embed_dim  # type: ignore[attr-defined]
    head = LinearHead(np.zeros((2, dim), np.float32), np.zeros(2, np.float32), ["a", "b"], shapes.id)  # type: ignore[attr-defined]
    path = head.save(tmp_path / "h.safetensors")
    with pytest.raises(AdapterError, match="trained on embeddings of"):
        load_head(path, tiny_encoder)  # type: ignore[arg-type]
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError, match=r"junk\.safetensors"):
        load_head(tmp_path / "junk.safetensors", shapes)  # type: ignore[arg-type]


def test_cache_adapter_beats_zero_shot_and_round_trips(embedded: tuple, shapes: object, tmp_path: Path) -> None:
    from clipzero.finetune.cache_adapter import CacheAdapter
    from clipzero.finetune.run import fit_cache

    data, train, select, test = embedded
    adapter = fit_cache(shapes, train, data.classes, select=select, templates="photo")  # type: ignore[arg-type]
    cached = float((adapter.logits(test.vectors).argmax(1) == test.labels).mean())
    plain = float((adapter.zero_shot_logits(test.vectors).argmax(1) == test.labels).mean())
    assert adapter.alpha > 0 and cached > plain
    adapter.save(tmp_path / "cache")
    loaded = CacheAdapter.load(tmp_path / "cache")
    assert (loaded.alpha, loaded.beta) == (adapter.alpha, adapter.beta)
    np.testing.assert_allclose(loaded.logits(test.vectors), adapter.logits(test.vectors), rtol=1e-6)


# -- LoRA -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lora_changes_only_the_image_tower_and_reloads_exactly(task: Path, tmp_path: Path) -> None:
    import torch

    from clipzero import load_model
    from clipzero.finetune.lora import LoraSettings
    from clipzero.finetune.run import fit_lora

    data = load_labeled(task)
    splits = evaluation_splits(data, shots=4, seed=0)
    settings = LoraSettings(rank=4, steps=12, batch_size=16, lr=3e-3, evaluations=1)
    model, base, record = fit_lora(
        "clipzero-shapes",
        splits.shots,
        data.classes,
        select=None,
        templates="photo",
        settings=settings,
        progress=False,
        out=tmp_path / "adapter",
    )
    assert record["select_accuracy"] is None and len(record["curve"]) > 0
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".visual.transformer.resblocks." in n for n in trainable)
    assert any(".attn." in n for n in trainable) and any("mlp.c_fc" in n for n in trainable)
    pixels = base.preprocess_images([e.path for e in splits.test[:6]])
    with torch.inference_mode():
        adapted = model.encode_image(pixels)
    merged = load_model("clipzero-shapes", device="cpu", adapter=tmp_path / "adapter")
    assert merged.id.startswith(base.id + "+lora@")
    with torch.inference_mode():
        torch.testing.assert_close(merged.model.encode_image(pixels), adapted, rtol=1e-4, atol=1e-4)
    original = load_model("clipzero-shapes", device="cpu")
    before = original.model.state_dict()
    after = merged.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.transformer.resblocks.") for k in changed)
    assert all(
        k.endswith(("attn.in_proj_weight", "attn.out_proj.weight", "c_fc.weight", "c_proj.weight")) for k in changed
    )
    tokens = original.tokenizer(["a red circle"])
    with torch.inference_mode():
        torch.testing.assert_close(merged.model.encode_text(tokens), original.model.encode_text(tokens))


def test_adapter_for_another_model_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    import json

    from clipzero import load_model

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "clipzero-adapter.json").write_text(json.dumps({"base_model": "clipzero-shapes@sha256:0"}))
    with pytest.raises(AdapterError, match="was trained on"):
        load_model(str(tiny_model_dir), device="cpu", adapter=folder)
    with pytest.raises(AdapterError, match="not a saved LoRA adapter"):
        load_model(str(tiny_model_dir), device="cpu", adapter=tmp_path)


def test_lora_autocasts_to_bf16_only_where_the_cpu_computes_it_natively() -> None:
    from clipzero.encoder import native_bf16
    from clipzero.finetune.lora import LoraSettings

    assert LoraSettings().bf16 is native_bf16()  # emulated bf16 is about 10x slower than fp32
    assert LoraSettings(bf16=False).bf16 is False and LoraSettings(bf16=True).bf16 is True
