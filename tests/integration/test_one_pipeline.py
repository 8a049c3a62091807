"""One path from images to vectors: classify, tag, index add, the HTTP API, the agent tools, the Ray engine and
eval's embedding step give the same vectors for the same files, and the same words for a file that cannot be read."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_image

LABELS = ["red", "green", "blue", "a cat"]


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Formats and sizes that take different decode paths: a large JPEG (draft decoding), a small JPEG, an RGBA
    PNG over white, a 16-bit greyscale PNG, and the same content under a second name."""
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    out = [
        write_image(folder / "large.jpg", (200, 40, 40), size=(900, 700)),
        write_image(folder / "small.jpg", (40, 200, 40), size=(50, 40)),
    ]
    rgba = Image.new("RGBA", (60, 60), (0, 0, 255, 128))
    rgba.save(folder / "alpha.png")
    grey = Image.fromarray((np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16))  # mode I;16
    grey.save(folder / "grey16.png")
    out += [folder / "alpha.png", folder / "grey16.png"]
    (folder / "copy.jpg").write_bytes(out[0].read_bytes())
    return [*out, folder / "copy.jpg"]


@pytest.mark.slow
def test_every_door_gives_the_same_vectors(tiny_model_dir: Path, files: list[Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from clipzero import load_model
    from clipzero.finetune.data import Example
    from clipzero.finetune.run import embed_examples
    from clipzero.pipeline import embed_all
    from clipzero.service.api import create_api
    from clipzero.service.core import Service, ServiceSettings
    from clipzero.store import EmbeddingStore
    from clipzero.tagging import TagResult, tag_images
    from clipzero.zeroshot import ZeroShotClassifier

    encoder = load_model(str(tiny_model_dir), device="cpu", precision="fp32")
    names = [str(f) for f in files]
    reference = np.stack([item.vector for item in embed_all(names, encoder, workers=0)])  # type: ignore[misc]
    assert not np.allclose(reference[0], reference[1])  # the images really differ
    np.testing.assert_allclose(reference[0], reference[-1], atol=1e-6)  # the copy is the same content
    classifier = ZeroShotClassifier(encoder, LABELS, templates="photo")

    def similarities(predictions: list) -> np.ndarray:
        return np.array([[{s.label: s.similarity for s in p.predictions}[label] for label in LABELS]
                         for p in predictions])  # fmt: skip

    expected = reference @ classifier.weights.T
    doors: dict[str, np.ndarray] = {}
    doors["classify"] = similarities(classifier.classify(names, top_k=len(LABELS), batch_size=2))
    tagged = [r for r in tag_images(names, classifier, top_k=len(LABELS), batch_size=3) if isinstance(r, TagResult)]
    doors["tag"] = similarities([r.prediction for r in tagged])
    for door in ("classify", "tag"):
        np.testing.assert_allclose(doors[door], expected, atol=1e-5, err_msg=door)

    vectors: dict[str, np.ndarray] = {}
    with EmbeddingStore(tmp_path / "store", encoder) as store:
        report = store.add(names, batch_size=2)
        assert (report.encoded, report.reused) == (len(names) - 1, 1)  # the copy is not encoded again
        vectors["index add"] = np.stack([store.get(n).vector for n in names])  # type: ignore[union-attr]
    examples = [Example(n, 0) for n in names]
    vectors["eval embedding"] = embed_examples(encoder, examples, batch_size=2).vectors
    service = Service(ServiceSettings(model=str(tiny_model_dir), precision="fp32", device="cpu"))
    try:
        client = TestClient(create_api(service))
        body = {"images": [base64.b64encode(f.read_bytes()).decode() for f in files]}
        reply = client.post("/v1/embed", json=body)
        assert reply.status_code == 200, reply.text
        vectors["HTTP API"] = np.asarray(reply.json()["vectors"], np.float32)
    finally:
        service.close()
    from clipzero.tools.toolbox import Toolbox

    tools = Toolbox(model=str(tiny_model_dir), precision="fp32", device="cpu", roots=[files[0].parent])
    vectors["agent tool"] = np.asarray(tools.call("embed", {"images": names})["images"], np.float32)
    pytest.importorskip("ray")
    from clipzero.ray_engine import RayOptions, ray_embed

    by_path = {item.name: item.vector for item, _ in ray_embed(names, spec=str(tiny_model_dir), precision="fp32",
                                                               options=RayOptions(batch_size=2))}  # fmt: skip
    vectors["Ray engine"] = np.stack([by_path[n] for n in names])
    for door, found in vectors.items():
        np.testing.assert_allclose(found, reference, atol=1e-5, err_msg=door)


def test_every_door_words_an_unreadable_file_the_same(tiny_model_dir: Path, tmp_path: Path) -> None:
    from clipzero import load_model
    from clipzero.store import EmbeddingStore
    from clipzero.tagging import TagFailure, tag_images
    from clipzero.tools.toolbox import Toolbox
    from clipzero.zeroshot import ZeroShotClassifier

    encoder = load_model(str(tiny_model_dir), device="cpu", precision="fp32")
    classifier = ZeroShotClassifier(encoder, LABELS, templates="photo")
    tools = Toolbox(model=str(tiny_model_dir), precision="fp32", device="cpu", roots=[tmp_path], templates="photo")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    for bad in (str(tmp_path / "missing.png"), str(broken), str(tmp_path)):
        said = {"classify": classifier.classify([bad], on_error="report")[0].error}
        said["tag"] = next(r.reason for r in tag_images([bad], classifier) if isinstance(r, TagFailure))
        if Path(bad).is_file():  # the agent tool refuses a missing path or a folder before reading it
            found = tools.call("classify_images", {"images": [bad], "labels": LABELS})
            said["agent tool"] = found["results"][0]["error"]
        with EmbeddingStore(tmp_path / "store", encoder) as store:
            said["index add"] = store.add([bad]).failed[0][1]
        assert len(set(said.values())) == 1, said
        assert said["classify"] and "Traceback" not in said["classify"]
