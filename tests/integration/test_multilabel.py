"""Every label that applies: scenes of two or three shapes get each of their labels and not the others, with the
bundled model and its calibrated default cut, through the Python API, the CLI and the HTTP API alike."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import run
from tests.serving import start_server, stop_server

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def world() -> tuple[list, list[str], list[set[str]]]:
    """40 scenes of 2-3 objects (another seed than the reference task's), all 64 labels, the labels present."""
    from clipzero.multilabel import reference_scenes
    from clipzero.synthetic.world import all_combinations, combination_label

    labels = [combination_label(c, s) for c, s in all_combinations()]
    scenes = reference_scenes(40, seed=3)
    return [image for image, _ in scenes], labels, [{labels[j] for j in present} for _, present in scenes]


@pytest.fixture(scope="module")
def shapes() -> object:
    from clipzero import load_model

    return load_model("clipzero-shapes", device="cpu", precision="fp32")


def _counts(found: list[set[str]], truth: list[set[str]]) -> tuple[float, float, float]:
    tp = sum(len(f & t) for f, t in zip(found, truth))
    precision = tp / max(1, sum(len(f) for f in found))
    recall = tp / sum(len(t) for t in truth)
    exact = sum(f == t for f, t in zip(found, truth)) / len(truth)
    return precision, recall, exact


def test_scenes_get_every_label_that_applies_and_not_the_others(world: tuple, shapes: object) -> None:
    from clipzero.zeroshot import ZeroShotClassifier

    images, labels, truth = world
    classifier = ZeroShotClassifier(shapes, labels)  # type: ignore[arg-type]
    results = classifier.classify(images, multi_label=True)
    found = [{t.label for t in r.tags or []} for r in results]
    precision, recall, exact = _counts(found, truth)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    assert exact >= 0.4
    for result in results:  # tags best first, each with its score over the cut and a region inside the image
        scores = [t.score for t in result.tags or []]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= t.region[0] < t.region[2] <= 1 and 0 <= t.region[1] < t.region[3] <= 1 for t in result.tags)
    one_view = classifier.classify(images, multi_label=True, views=1)
    _, recall_one, _ = _counts([{t.label for t in r.tags or []} for r in one_view], truth)
    assert recall_one < recall - 0.2  # the whole image alone misses most of the second and third objects


def test_labels_absent_from_every_picture_are_not_given(world: tuple, shapes: object) -> None:
    from clipzero.zeroshot import ZeroShotClassifier

    images, labels, truth = world
    rng = random.Random(0)
    given = 0
    for image, present in list(zip(images, truth))[:20]:
        absent = rng.sample([label for label in labels if label not in present], 4)
        result = ZeroShotClassifier(shapes, absent).classify([image], multi_label=True)[0]  # type: ignore[arg-type]
        given += len(result.tags or [])
    assert given <= 4  # of 80 chances: no label wins a view just by being the least bad of a few


def test_a_random_model_gives_neither_every_label_nor_none(tiny_encoder: object, tmp_path: Path) -> None:
    from clipzero.zeroshot import ZeroShotClassifier
    from tests.conftest import write_pictures

    pictures = write_pictures(tmp_path, 12)
    labels = ["red circle", "blue star", "green cross", "a dog", "a beach", "sunset", "a car", "text"]
    results = ZeroShotClassifier(tiny_encoder, labels, templates="photo").classify(pictures, multi_label=True)  # type: ignore[arg-type]
    given = sum(len(r.tags or []) for r in results)
    assert 0 < given < len(labels) * len(pictures)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server(home=tmp_path_factory.mktemp("multilabel-home"))
    yield url
    stop_server(process)


def test_every_door_gives_the_same_label_sets(world: tuple, shapes: object, server: str, tmp_path: Path) -> None:
    """Python, the CLI, the HTTP API, the web UI (gradio_client) and the MCP tool (the MCP SDK's client)."""
    from clipzero.zeroshot import ZeroShotClassifier

    images, labels, _ = world
    files = []
    for i, image in enumerate(images[:4]):
        files.append(tmp_path / f"scene-{i}.png")
        image.save(files[-1])
    (tmp_path / "labels.txt").write_text("\n".join(labels))
    doors: dict[str, list[list[str]]] = {}
    classifier = ZeroShotClassifier(shapes, labels, templates="photo")  # type: ignore[arg-type]
    doors["python"] = [sorted(t.label for t in r.tags or []) for r in
                       classifier.classify([str(f) for f in files], multi_label=True)]  # fmt: skip
    cli = run("classify", *map(str, files), "--labels-file", str(tmp_path / "labels.txt"), "--model",
              "clipzero-shapes", "--precision", "fp32", "--templates", "photo", "--multi-label", "--json")  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    doors["cli"] = [sorted(t["label"] for t in row["labels"]) for row in json.loads(cli.stdout)]
    remote = run("classify", *map(str, files), "--labels-file", str(tmp_path / "labels.txt"), "--templates", "photo",
                 "--multi-label", "--json", "--server", server)  # fmt: skip
    assert remote.returncode == 0 and "classifying here" not in remote.stderr, remote.stderr
    doors["cli --server"] = [sorted(t["label"] for t in row["labels"]) for row in json.loads(remote.stdout)]
    body = {"images": [base64.b64encode(f.read_bytes()).decode() for f in files], "labels": labels,
            "templates": "photo", "multi_label": True, "top_k": 3}  # fmt: skip
    reply = httpx.post(f"{server}/v1/classify", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    doors["http"] = [sorted(t["label"] for t in row["labels"]) for row in reply.json()["results"]]
    from gradio_client import Client, handle_file

    _, table, _, _, _ = Client(server, verbose=False).predict(
        [handle_file(str(f)) for f in files], "\n".join(labels), "photo", 3, 0, False, False, True, api_name="/classify"
    )
    doors["web ui"] = [sorted(part.rsplit(" ", 1)[0] for part in row[1].split(", ")) if not row[1].startswith("(")
                       else [] for row in table["data"]]  # fmt: skip
    doors["mcp"] = _over_mcp(files, labels)
    assert all(found == doors["python"] for found in doors.values()), doors
    assert all(doors["python"]) and any(len(found) > 1 for found in doors["python"])
    wrong = httpx.post(f"{server}/v1/classify", json={**body, "reject": "auto"}, timeout=60)
    assert wrong.status_code == 422 and wrong.json()["error"]["type"] == "RequestError"


def _over_mcp(files: list[Path], labels: list[str]) -> list[list[str]]:
    pytest.importorskip("mcp")
    import os
    import sys

    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    argv = ["-m", "clipzero", "mcp", "--model", "clipzero-shapes", "--root", str(files[0].parent)]
    params = StdioServerParameters(command=sys.executable, args=argv, env=dict(os.environ))

    async def session() -> list[list[str]]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            result = await client.call_tool("classify_images", {"images": [f.name for f in files], "labels": labels,
                                            "templates": "photo", "multi_label": True})  # fmt: skip
            assert not result.is_error, result.content[0].text
            return [sorted(t["label"] for t in row["labels"]) for row in result.structured_content["results"]]

    return anyio.run(session)


def test_tag_writes_every_label_and_resumes_in_jsonl_and_csv(world: tuple, tmp_path: Path) -> None:
    from clipzero.outputs import read_results

    images, labels, _truth = world
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, image in enumerate(images[:6]):
        image.save(folder / f"{i}.png")
    (tmp_path / "labels.txt").write_text("\n".join([*labels, "red; or blue"]))
    for ending in ("jsonl", "csv"):
        out = tmp_path / f"tags.{ending}"
        done = run("tag", str(folder), "--labels-file", str(tmp_path / "labels.txt"), "--model", "clipzero-shapes",
                   "--multi-label", "--views", "5", "--out", str(out), "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = {Path(r["image"]).name: r for r in read_results(out)}
        assert len(rows) == 6 and all(isinstance(r["labels"], list) for r in rows.values())
        assert sum(len(r["labels"]) for r in rows.values()) >= 6
        again = run("tag", str(folder), "--labels-file", str(tmp_path / "labels.txt"), "--model", "clipzero-shapes",
                    "--multi-label", "--views", "5", "--out", str(out), "--json")  # fmt: skip
        assert json.loads(again.stdout)["skipped"] == 6
        single = run("tag", str(folder), "--labels-file", str(tmp_path / "labels.txt"), "--model",
                     "clipzero-shapes", "--out", str(out))  # fmt: skip
        if ending == "csv":  # a CSV written with labels is not resumed without them
            assert single.returncode == 2 and "--multi-label" in single.stderr


def test_calibrate_multi_label_raises_f1_on_held_out_images_of_a_shifted_look(tmp_path: Path) -> None:
    """Blurred, noisy scenes: the reference cut does not transfer; cuts fitted on half the set do, measured on the
    other half. The calibration file then serves eval and classify."""
    from clipzero.outputs import join_labels
    from clipzero.synthetic.world import Style, all_combinations, combination_label, render, sample_scene

    combos = all_combinations()
    rng, shifted = random.Random(5), Style(blur=1.2, noise=25)
    lines = ["path,labels"]
    for i in range(80):
        scene = sample_scene(rng, size=96, n_objects=rng.choice((2, 3)), allowed=combos, style=shifted)
        render(scene).save(tmp_path / f"{i}.png")
        found = sorted({combination_label(o.colour, o.shape) for o in scene.objects})
        lines.append(f"{i}.png,{join_labels(found)}")
    (tmp_path / "set.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.txt").write_text("\n".join(combination_label(c, s) for c, s in combos))
    common = ["--labels-file", str(tmp_path / "labels.txt"), "--model", "clipzero-shapes", "--multi-label", "--json"]
    fitted = run("calibrate", str(tmp_path / "set.csv"), *common, "--out", str(tmp_path / "cal.json"))
    assert fitted.returncode == 0, fitted.stderr
    report = json.loads(fitted.stdout)
    assert report["fit_images"] == report["test_images"] == 40
    assert report["calibrated"]["micro_f1"] > report["reference"]["micro_f1"] + 0.1, report
    assert len(report["calibrated"]["per_label"]) == 64 and report["calibrated"]["map"] is not None
    measured = run("eval", str(tmp_path / "set.csv"), *common, "--calibration", str(tmp_path / "cal.json"))
    assert measured.returncode == 0, measured.stderr
    figures = json.loads(measured.stdout)
    assert figures["rule"] == "calibration" and figures["images"] == 80 and 0 <= figures["exact_set"] <= 1
    used = run("classify", str(tmp_path / "0.png"), "--labels-file", str(tmp_path / "labels.txt"), "--model",
               "clipzero-shapes", "--multi-label", "--calibration", str(tmp_path / "cal.json"), "--json")  # fmt: skip
    assert used.returncode == 0 and "labels" in json.loads(used.stdout)[0], used.stderr
    bad = run("calibrate", str(tmp_path / "labels.txt"), *common, "--out", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "multi-label set is a CSV" in bad.stderr
