"""ZeroShotClassifier: parity with open_clip, the label cache, open-set threshold, labels in and out."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from clipzero import ClipzeroWarning, LabelError, ZeroShotClassifier, read_labels
from clipzero.encoder import Encoder
from clipzero.prompts import load_templates

LABELS = ["red circle", "green square", "blue star", "yellow heart"]


def test_parity_with_open_clip(tiny_encoder: Encoder, images: list[Path]) -> None:
    """Class embeddings and probabilities equal open_clip's build_zero_shot_classifier plus its logits."""
    from open_clip import build_zero_shot_classifier

    from clipzero import load_templates

    templates = load_templates("ensemble-en")
    classifier = ZeroShotClassifier(tiny_encoder, LABELS, templates=templates)
    model = tiny_encoder.model
    with torch.no_grad():
        reference = build_zero_shot_classifier(
            model,
            tiny_encoder.tokenizer,
            LABELS,
            [lambda c, t=t: t.format(label=c) for t in templates.templates],
            num_classes_per_batch=3,
        )  # (dim, n_labels)
        np.testing.assert_allclose(classifier.weights, reference.T.numpy(), atol=1e-5)
        pixels = tiny_encoder.preprocess_images(images)
        features = model.encode_image(pixels, normalize=True)
        logits = model.logit_scale.exp() * features @ reference
        expected = logits.softmax(dim=-1).numpy()
    predictions = classifier.classify(images, top_k=len(LABELS))
    for row, prediction in enumerate(predictions):
        got = {p.label: p.score for p in prediction.predictions}
        np.testing.assert_allclose([got[label] for label in LABELS], expected[row], atol=1e-5)
        sims = {p.label: p.similarity for p in prediction.predictions}
        np.testing.assert_allclose([sims[label] for label in LABELS], (features @ reference)[row].numpy(), atol=1e-5)
        assert prediction.label == prediction.predictions[0].label
        assert [p.score for p in prediction.predictions] == sorted(
            (p.score for p in prediction.predictions), reverse=True
        )


def test_second_classifier_encodes_no_text(tiny_encoder: Encoder) -> None:
    before = tiny_encoder.texts_encoded
    ZeroShotClassifier(tiny_encoder, LABELS, templates="ensemble-en")
    first = tiny_encoder.texts_encoded - before
    assert first == len(LABELS) * 24
    ZeroShotClassifier(tiny_encoder, list(reversed(LABELS)), templates="ensemble-en")
    assert tiny_encoder.texts_encoded - before == first  # all four labels came from the cache
    ZeroShotClassifier(tiny_encoder, [*LABELS, "purple cross"], templates="ensemble-en")
    assert tiny_encoder.texts_encoded - before == first + 24  # only the new label was encoded
    ZeroShotClassifier(tiny_encoder, LABELS, templates="photo")
    assert tiny_encoder.texts_encoded - before == first + 24 + len(LABELS)  # other templates, other keys


def test_cached_and_fresh_embeddings_agree(tiny_encoder: Encoder) -> None:
    from clipzero.zeroshot import clear_label_cache

    cached = ZeroShotClassifier(tiny_encoder, LABELS, templates="photo").weights
    clear_label_cache()
    fresh = ZeroShotClassifier(tiny_encoder, LABELS[::-1], templates="photo").weights
    np.testing.assert_allclose(cached, fresh[::-1], atol=1e-6)


def test_threshold_gives_none_of_these(tiny_encoder: Encoder, images: list[Path]) -> None:
    classifier = ZeroShotClassifier(tiny_encoder, LABELS, templates="photo")
    plain = classifier.classify(images[:1])[0]
    assert plain.label is not None
    top = plain.predictions[0].score
    assert classifier.classify(images[:1], threshold=min(1.0, top + 1e-4))[0].label is None
    assert classifier.classify(images[:1], threshold=top - 1e-4)[0].label == plain.label
    with pytest.raises(LabelError, match="threshold"):
        classifier.classify(images[:1], threshold=1.5)


def test_top_k_and_errors_reported(tiny_encoder: Encoder, images: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    classifier = ZeroShotClassifier(tiny_encoder, LABELS, templates="photo")
    results = classifier.classify([images[0], broken, images[1]], top_k=2, on_error="report", batch_size=2)
    assert [r.image for r in results] == [str(images[0]), str(broken), str(images[1])]
    assert (
        results[1].error
        and results[1].label is None
        and results[1].to_dict() == {"image": str(broken), "error": results[1].error}
    )
    assert len(results[0].predictions) == 2 and results[2].error is None
    from clipzero import ImageError

    with pytest.raises(ImageError, match=r"broken\.jpg"):
        classifier.classify([images[0], broken])


def test_batching_does_not_change_results(tiny_encoder: Encoder, images: list[Path]) -> None:
    classifier = ZeroShotClassifier(tiny_encoder, LABELS, templates="photo")
    one = classifier.classify(images, batch_size=1)
    many = classifier.classify(images, batch_size=8)
    for a, b in zip(one, many):
        assert a.label == b.label
        np.testing.assert_allclose([p.score for p in a.predictions], [p.score for p in b.predictions], atol=1e-5)


def test_labels_kept_as_given_and_duplicates_merged(tiny_encoder: Encoder) -> None:
    with pytest.warns(ClipzeroWarning, match="duplicate label 'Red Circle'"):
        classifier = ZeroShotClassifier(tiny_encoder, ["red circle", "Red Circle", " 蓝星 "], templates="photo")
    assert classifier.labels == ["red circle", "蓝星"]


@pytest.mark.parametrize("labels", [[], ["  "], "cat"])
def test_bad_label_sets(tiny_encoder: Encoder, labels: object) -> None:
    with pytest.raises(LabelError):
        ZeroShotClassifier(tiny_encoder, labels, templates="photo")  # type: ignore[arg-type]


def test_long_label_warns_truncation(tiny_encoder: Encoder) -> None:
    long_label = " ".join(["enormous"] * 30)  # the tiny model's context is 16 tokens
    with pytest.warns(ClipzeroWarning, match="truncated"):
        ZeroShotClassifier(tiny_encoder, [long_label, "cat"], templates="photo")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClipzeroWarning)
        ZeroShotClassifier(tiny_encoder, ["cat", "dog"], templates="photo")


def test_read_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("\ufeff# animals\ncat\n\n  dog  \n# birds later\n鸟\n", encoding="utf-8")
    assert read_labels(path) == ["cat", "dog", "鸟"]
    with pytest.raises(LabelError, match="not found"):
        read_labels(tmp_path / "none.txt")


def test_sigmoid_scoring_for_siglip_style_models(tiny_arch: str) -> None:
    """A model with a logit bias scores labels independently with a sigmoid."""
    import open_clip

    torch.manual_seed(1)
    model = open_clip.create_model(tiny_arch, init_logit_bias=-10.0)
    encoder = Encoder.from_open_clip(
        model, open_clip.image_transform(32, is_train=False), open_clip.get_tokenizer(tiny_arch), id="tiny-siglip"
    )
    classifier = ZeroShotClassifier(encoder, LABELS, templates="photo")
    assert classifier.uses_sigmoid
    embedding = encoder.encode_texts(["a red circle"])
    probabilities, similarities = classifier.scores(embedding)
    expected = 1 / (1 + np.exp(-(similarities * encoder.logit_scale + encoder.logit_bias)))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    assert not np.isclose(probabilities.sum(), 1.0)


def test_second_process_encodes_no_text(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The persistent label cache under CLIPZERO_HOME: a new process with the same labels encodes nothing."""
    import subprocess
    import sys

    code = (
        "import sys, clipzero\n"
        f"encoder = clipzero.load_model({str(tiny_model_dir)!r})\n"
        "clf = clipzero.ZeroShotClassifier(encoder, sys.argv[1:], templates='ensemble-en')\n"
        "print(encoder.texts_encoded, float(clf.weights.sum()))\n"
    )
    labels = ["red circle", "blue star", "green square"]

    def run(*args: str) -> tuple[int, float]:
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        count, checksum = out.stdout.split()
        return int(count), float(checksum)

    first = run(*labels)
    second = run(*labels)
    assert first[0] == 3 * 24 and second[0] == 0
    assert second[1] == pytest.approx(first[1], abs=1e-5)  # the same embeddings came back
    third = run(*labels, "pink heart")
    assert third[0] == 24  # only the new label


def test_label_cache_can_be_disabled(tiny_encoder: Encoder) -> None:
    from clipzero.labelcache import default_label_cache

    ZeroShotClassifier(tiny_encoder, ["cat", "dog"], templates="photo", label_cache=False)
    assert len(default_label_cache()) == 0
    ZeroShotClassifier(tiny_encoder, ["cat", "dog", "bird"], templates="photo")
    assert len(default_label_cache()) == 1  # only the label this classifier encoded ("bird")


def test_label_caches_stay_under_their_caps(tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sees a new label set on every request: neither cache may grow without end."""
    import clipzero.labelcache as labelcache

    monkeypatch.setenv("CLIPZERO_LABEL_CACHE_ENTRIES", "50")
    memory = labelcache.MemoryLabelCache(max_entries=30)
    monkeypatch.setattr(labelcache, "_MEMORY", memory)
    disk = labelcache.default_label_cache()
    assert disk.max_entries == 50
    for i in range(1000):
        ZeroShotClassifier(tiny_encoder, [f"thing {i}", "kept"], templates="photo")
        assert len(disk) <= 50 and len(memory) <= 30
    assert len(disk) == 50
    # "kept" was used by every set, so it is this process's most recently used label and was never evicted.
    key = (tiny_encoder.id, load_templates("photo").content_hash, "kept")
    assert memory.get(key) is not None
    assert disk.get_many([(tiny_encoder.id, load_templates("photo").content_hash, "thing 0")]) == {}


def test_the_persistent_label_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    from clipzero.labelcache import LabelCache

    cache = LabelCache(tmp_path / "labels.sqlite", max_entries=3)
    vector = np.ones(4, np.float32)
    cache.put_many({("m", "t", name): vector for name in ("a", "b", "c")})
    assert len(cache.get_many([("m", "t", "a")])) == 1  # reading "a" makes it recent
    cache.put_many({("m", "t", "d"): vector})
    assert sorted(k[2] for k in cache.get_many([("m", "t", n) for n in "abcd"])) == ["a", "c", "d"]


def test_a_label_cache_written_before_eviction_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from clipzero.labelcache import LabelCache

    path = tmp_path / "labels.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE labels (model TEXT NOT NULL, templates TEXT NOT NULL, label TEXT NOT NULL, "
                   "vector BLOB NOT NULL, PRIMARY KEY (model, templates, label))")  # fmt: skip
        db.execute("INSERT INTO labels VALUES ('m', 't', 'old', ?)", (np.ones(4, np.float32).tobytes(),))
    cache = LabelCache(path, max_entries=2)
    assert list(cache.get_many([("m", "t", "old")])) == [("m", "t", "old")]
    cache.put_many({("m", "t", f"new {i}"): np.zeros(4, np.float32) for i in range(3)})
    assert len(cache) == 2
