"""The service end to end: a real `clipzero serve` process on 127.0.0.1, called over HTTP, through gradio_client,
from a headless Chromium, by an OpenAPI fuzzer, and by 20 concurrent clients."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from tests.serving import browser_page, needs_chromium, start_server  # noqa: E402 (after the skip: it needs httpx)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABELS = "red circle, blue star, green cross, yellow heart, purple triangle"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_server("--max-upload-mb", "1", "--max-labels", "50", home=tmp_path_factory.mktemp("home"))
    yield url
    process.terminate()
    process.wait(timeout=10)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# -- the HTTP API -----------------------------------------------------------------------------------------------
def test_classify_multipart_and_json(server: str) -> None:
    files = [
        ("images", (p.name, p.read_bytes(), "image/png"))
        for p in (EXAMPLES / "blue-star.png", EXAMPLES / "red-circle.png")
    ]
    response = httpx.post(
        f"{server}/v1/classify", files=files, data={"labels": LABELS, "templates": "photo", "top_k": "2"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["image"], r["label"]) for r in results] == [
        ("blue-star.png", "blue star"),
        ("red-circle.png", "red circle"),
    ]
    assert len(results[0]["predictions"]) == 2
    body = {"images": [b64(EXAMPLES / "green-cross.png")], "labels": LABELS, "names": ["g"], "templates": "photo"}
    response = httpx.post(f"{server}/v1/classify", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0] == {**response.json()["results"][0], "image": "g", "label": "green cross"}


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"json": {"images": ["bm90IGFuIGltYWdl"], "labels": ["a", "b"]}}, 400, "image-0: not an image"),
        ({"json": {"images": ["%%%"], "labels": ["a"]}}, 400, "not valid base64"),
        ({"files": [("images", ("big.png", b"x" * 1_100_000, "image/png"))], "data": {"labels": "a"}}, 413, "limit"),
        ({"json": {"images": ["aGk="], "labels": []}}, 422, "no labels"),
        ({"json": {"images": ["aGk="], "labels": [f"l{i}" for i in range(51)]}}, 422, "over this server's limit of 50"),
        ({"json": {"images": ["aGk="], "labels": ["a"], "top_k": 0}}, 422, "top_k"),
        ({"json": {"images": ["aGk="], "labels": ["a"], "colour": 1}}, 422, "colour"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "json"),
        ({"files": [("images", ("a.png", b"", "image/png"))], "data": {"labels": "a, b"}}, 400, "empty file"),
    ],
    ids=["not-an-image", "bad-base64", "too-large", "no-labels", "too-many-labels", "bad-top-k", "unknown-field",
         "malformed-json", "empty-file"],
)  # fmt: skip
def test_errors_are_json_with_the_right_status(server: str, request_kwargs: dict, status: int, words: str) -> None:
    response = httpx.post(f"{server}/v1/classify", **request_kwargs)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["error"]["message"].lower()


@pytest.mark.parametrize(
    ("route", "body", "kind", "words"),
    [
        ("/v1/classify", {"images": [], "labels": ["a", "b"]}, "RequestError", "images"),
        ("/v1/classify", {"labels": ["a", "b"]}, "RequestError", "images: field required"),
        ("/v1/classify", {"images": ["aGk="], "labels": ["a"], "top_k": 0}, "RequestError", "top_k"),
        ("/v1/classify", {"images": ["aGk="], "labels": []}, "LabelError", "no labels"),
        ("/v1/embed", {"images": []}, "RequestError", "no images given"),
        ("/v1/embed", {"texts": []}, "RequestError", "no texts given"),
        ("/v1/embeddings", {"model": "clipzero-shapes", "input": []}, "RequestError", "input is empty"),
    ],
)  # fmt: skip
def test_each_error_names_what_was_wrong_with_its_own_type(server: str, route: str, body: dict, kind: str,
                                                          words: str) -> None:  # fmt: skip
    response = httpx.post(f"{server}{route}", json=body)
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert error["type"] == kind and words in error["message"].lower(), error


def test_embed_models_search_and_openapi(server: str) -> None:
    texts = httpx.post(f"{server}/v1/embed", json={"texts": ["a photo of a blue star.", "a red circle"]}).json()
    images = httpx.post(f"{server}/v1/embed", json={"images": [b64(EXAMPLES / "blue-star.png")]}).json()
    assert texts["dim"] == images["dim"] == len(images["vectors"][0])
    similarity = [sum(a * b for a, b in zip(images["vectors"][0], t)) for t in texts["vectors"]]
    assert similarity[0] > similarity[1]
    assert httpx.post(f"{server}/v1/embed", json={}).status_code == 422
    search = httpx.post(f"{server}/v1/search", json={"text": "blue star"})
    assert search.status_code == 404 and "no embedding store" in search.json()["error"]["message"]
    models = httpx.get(f"{server}/v1/models").json()
    assert models["model"].startswith("clipzero-shapes@") and models["limits"]["max_labels"] == 50
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/v1/classify", "/v1/search", "/v1/embed", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]


def test_concurrent_clients_are_batched_together(server: str) -> None:
    before = httpx.get(f"{server}/v1/models").json()["batching"]
    image = b64(EXAMPLES / "yellow-heart.png")

    def client(_: int) -> list[int]:
        with httpx.Client(timeout=60) as session:
            return [
                session.post(
                    f"{server}/v1/classify", json={"images": [image], "labels": LABELS, "templates": "photo"}
                ).status_code
                for _ in range(4)
            ]

    with ThreadPoolExecutor(20) as pool:
        statuses = [s for batch in pool.map(client, range(20)) for s in batch]
    assert statuses == [200] * 80
    after = httpx.get(f"{server}/v1/models").json()["batching"]
    images, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images == 80 and batches < images  # requests that arrived together shared forward passes


def test_api_key_is_required_when_set(tmp_path: Path) -> None:
    process, url = start_server("--api-key", "s3cret", "--no-ui", home=tmp_path)
    try:
        body = {"texts": ["x"]}
        assert httpx.post(f"{url}/v1/embed", json=body).status_code == 401
        assert httpx.post(f"{url}/v1/embed", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.post(f"{url}/v1/embed", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200  # liveness stays open
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- the web UI -------------------------------------------------------------------------------------------------
def test_gradio_client_calls_the_ui(server: str) -> None:
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    bars, table, _, gallery, _ = client.predict(
        [handle_file(str(EXAMPLES / "purple-triangle.png"))], LABELS, "photo", 3, 0, False, api_name="/classify"
    )
    assert bars["label"] == "purple triangle"
    assert table["data"][0][:2] == ["purple-triangle.png", "purple triangle"]
    top = bars["confidences"][0]["confidence"]
    assert [item["caption"] for item in gallery] == [f"purple triangle {top:.2f} · purple-triangle.png"]
    pictures = [handle_file(str(EXAMPLES / name)) for name in ("purple-triangle.png", "red-circle.png")]
    labels = "red circle, blue star"
    _, table, notes, gallery, _ = client.predict(pictures, labels, "photo", 3, 0, False, True, api_name="/classify")
    assert [row[1] for row in table["data"]] == ["(none of these)", "red circle"]  # the UI's reject toggle
    assert "purple-triangle.png**: none of these" in notes and "nearest 'red circle'" in notes
    captions = [item["caption"] for item in gallery]
    assert captions[0] == "none of these (nearest red circle) · purple-triangle.png"
    assert captions[1].startswith("red circle ") and captions[1].endswith(" · red-circle.png")


@pytest.mark.slow
@needs_chromium
def test_browser_uploads_an_example_and_sees_the_label(server: str) -> None:
    from playwright.sync_api import expect

    with browser_page() as page:
        page.goto(server, wait_until="networkidle")
        page.locator("#classify-files input[type=file]").set_input_files(str(EXAMPLES / "orange-square.png"))
        expect(page.locator("#classify-files")).to_contain_text("orange-square", timeout=30_000)  # uploaded
        page.locator("#classify-labels textarea").fill(LABELS + ", orange square")  # under this server's limit
        page.locator("#classify-button").click()
        expect(page.locator("#classify-result")).to_contain_text("orange square", timeout=60_000)


@pytest.mark.slow
@needs_chromium
def test_browser_sees_the_galleries_of_classify_and_batch_tag(server: str) -> None:
    """Three uploads show as three images captioned label first; a batch tag shows its label chart and gallery."""
    import re

    from playwright.sync_api import expect

    pictures = [str(EXAMPLES / n) for n in ("red-circle.png", "blue-star.png", "yellow-heart.png")]
    with browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(server, wait_until="networkidle")
        page.locator("#classify-files input[type=file]").set_input_files(pictures)
        expect(page.locator("#classify-files")).to_contain_text("yellow-heart", timeout=30_000)
        page.locator("#classify-button").click()
        gallery = page.locator("#classify-gallery")
        expect(gallery.locator("img")).to_have_count(3, timeout=60_000)
        for name, label in (("red-circle", "red circle"), ("blue-star", "blue star"), ("yellow-heart", "yellow heart")):
            expect(gallery).to_contain_text(re.compile(rf"{label} [01]\.\d\d · {name}\.png"))
        expect(page.locator("#classify-result h2, #classify-result .output-class").first).to_have_text("red circle")
        gallery.locator("img").nth(1).click()  # a click shows that image's top-k
        expect(page.locator("#classify-result h2, #classify-result .output-class").first).to_have_text(
            "blue star", timeout=30_000
        )
        page.get_by_role("tab", name="Batch tag").click()
        page.locator("#batch-files input[type=file]").set_input_files(pictures)
        expect(page.locator("#batch-files")).to_contain_text("yellow-heart", timeout=30_000)
        page.locator("#batch-button").click()
        expect(page.locator("#batch-gallery img")).to_have_count(3, timeout=60_000)
        expect(page.locator("#batch-counts")).to_contain_text("red circle")
        expect(page.locator("#batch-summary")).to_contain_text("Tagged 3 images")
        page.get_by_role("tab", name="Classify").click()
        page.locator("#classify-examples img").nth(2).click()  # an example's thumbnail becomes the upload
        expect(page.locator("#classify-files")).to_contain_text("green-cross", timeout=30_000)
        page.locator("#classify-button").click()
        expect(gallery).to_contain_text(re.compile(r"green cross [01]\.\d\d · green-cross\.png"), timeout=60_000)
        expect(gallery.locator("img")).to_have_count(1)


@pytest.mark.slow
def test_openapi_fuzzing_finds_no_server_errors(server: str) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "run", f"{server}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "25",
         "--seed", "1", "--request-timeout", "30", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
