"""`clipzero mcp` driven by the MCP SDK's own client (ClientSession over stdio_client and over streamable HTTP),
against the bundled model, real files, a real store, and our scripted OpenAI-compatible LLM server."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import write_pictures
from tests.llm_server import LLMServer, Reply
from tests.serving import free_port

pytest.importorskip("mcp")
import anyio
import jsonschema
from mcp import ClientSession, StdioServerParameters, stdio_client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "do-not-leak-7f3a9c"
KEY = "mcp-test-key"


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _checked(tools: dict[str, Any], name: str, result: Any) -> dict[str, Any]:
    """The structured result of a successful call, checked against the tool's declared output schema."""
    assert not result.is_error, result.content[0].text
    jsonschema.validate(result.structured_content, tools[name].output_schema)
    assert json.loads(result.content[0].text) == result.structured_content  # the text block says the same
    return dict(result.structured_content)


def _world(tmp_path: Path) -> dict[str, Path]:
    """A root with the example images and 40 generated ones, a secret outside it, and links pointing out."""
    root = tmp_path / "root"
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("*.txt"))
    write_pictures(root / "many", 40)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_text(SECRET)
    shutil.copy(EXAMPLES / "red-circle.png", outside / "red.png")
    (root / "link-to-secret.png").symlink_to(outside / "secret.png")
    (root / "many" / "zz-link-out.png").symlink_to(outside / "red.png")  # a folder entry leading out of the root
    return {"root": root, "outside": outside}


def _store(path: Path, images: list[Path]) -> None:
    from clipzero import load_model
    from clipzero.store import EmbeddingStore

    with EmbeddingStore(path, load_model("clipzero-shapes", precision="fp32")) as store:
        store.add(images)


@pytest.mark.slow
def test_an_mcp_client_over_stdio_uses_every_tool(tmp_path: Path, llm_server: LLMServer) -> None:
    world = _world(tmp_path)
    root = world["root"]
    examples = sorted((root / "examples").glob("*.png"))
    _store(tmp_path / "photos", examples)
    llm_server.script = lambda request: Reply('{"descriptions": ["round", "red", "smooth edge"]}')
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "clipzero", "mcp", "--model", "clipzero-shapes", "--precision", "fp32", "--templates", "photo",
              "--root", str(root), "--store", str(tmp_path / "photos"), "--llm-url", llm_server.url,
              "--llm-model", "scripted"],
        env=dict(os.environ),
        cwd=str(tmp_path),
    )
    replies: list[str] = []

    async def session() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            listed = await client.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            seen["tools"] = tools

            async def call(name: str, arguments: dict[str, Any], **options: Any) -> Any:
                result = await client.call_tool(name, arguments, **options)
                replies.extend(block.text for block in result.content if hasattr(block, "text"))
                return result

            # every example image, one of them sent as a data URL, against all 64 colour x shape labels
            labels = (EXAMPLES / "labels-en.txt").read_text().split("\n")
            refs = [str(p) for p in examples[1:]] + [_data_url(examples[0])]
            seen["classify"] = _checked(tools, "classify_images",
                                        await call("classify_images", {"images": refs, "labels": [x for x in labels
                                                   if x.strip()], "top_k": 3}))  # fmt: skip
            seen["refs"] = refs
            seen["reject"] = _checked(tools, "classify_images", await call("classify_images", {
                "images": [str(examples[0])], "labels": ["red circle", "blue star"], "threshold": 0.999999}))
            seen["refused"] = [
                await call("classify_images", {"images": [path], "labels": ["a", "b"]})
                for path in (str(world["outside"] / "secret.png"), str(root / "link-to-secret.png"),
                             str(root / ".." / "outside" / "red.png"), "/etc/hostname")
            ]  # fmt: skip
            seen["invalid"] = await call("classify_images", {"images": [str(examples[0])], "labels": [], "top_k": 0})
            progress: list[tuple[float, float | None, str | None]] = []

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append((done, total, message))

            out = str(root / "tags.jsonl")
            arguments = {"folder": str(root / "many"), "labels": ["red", "green", "blue"], "out": out}
            seen["tag"] = _checked(tools, "tag_folder", await call("tag_folder", arguments,
                                                                   progress_callback=on_progress))  # fmt: skip
            seen["progress"] = progress
            seen["tag_again"] = _checked(tools, "tag_folder", await call("tag_folder", arguments))
            seen["tag_out_refused"] = await call("tag_folder", {**arguments, "out": str(world["outside"] / "t.jsonl")})
            seen["embed"] = _checked(tools, "embed", await call("embed", {"texts": ["a red circle", "红色圆形"],
                                                                          "images": [str(examples[0])]}))  # fmt: skip
            seen["search"] = _checked(tools, "search_images", await call("search_images", {"text": "red circle",
                                                                                            "top_k": 3}))  # fmt: skip
            seen["describe"] = _checked(tools, "describe_labels", await call("describe_labels",
                                                                             {"labels": ["red circle"]}))
            seen["models"] = _checked(tools, "list_models", await call("list_models", {}))
            seen["sets"] = _checked(tools, "list_template_sets", await call("list_template_sets", {}))
            resources = await client.list_resources()
            seen["resources"] = [str(r.uri) for r in resources.resources]
            store_info = await client.read_resource("clipzero://stores/photos")
            seen["store_info"] = json.loads(store_info.contents[0].text)
        return seen

    seen = anyio.run(session)
    assert set(seen["tools"]) == {"classify_images", "search_images", "tag_folder", "embed", "describe_labels",
                                  "list_models", "list_template_sets"}  # fmt: skip
    assert all(t.input_schema["type"] == "object" and t.output_schema and t.description for t in seen["tools"].values())

    results = seen["classify"]["results"]
    assert [r["image"] for r in results] == [*seen["refs"][:-1], f"images[{len(results) - 1}]"]
    expected = [Path(p).stem.replace("-", " ") for p in seen["refs"][:-1]] + ["black hexagon"]
    assert [r["label"] for r in results] == expected  # right labels for every example image
    assert all(len(r["predictions"]) == 3 and r["error"] is None for r in results)
    assert seen["reject"]["results"][0]["label"] is None  # "none of these" below the threshold
    assert seen["reject"]["results"][0]["predictions"][0]["label"] == "red circle"

    for refused in seen["refused"]:
        assert refused.is_error and "refused" in refused.content[0].text
    assert seen["invalid"].is_error and "invalid arguments" in seen["invalid"].content[0].text
    assert not any(SECRET in reply for reply in replies)  # nothing returned holds another file's contents

    tag = seen["tag"]
    assert (tag["tagged"], tag["skipped"], tag["failed"]) == (40, 0, 1)
    assert "refused" in tag["failures"][0]["error"] and tag["failures"][0]["image"].endswith("zz-link-out.png")
    assert sum(tag["label_counts"].values()) == 40
    rows = [json.loads(line) for line in (root / "tags.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and not any("zz-link-out" in r["image"] for r in rows)
    done = [p[0] for p in seen["progress"]]
    assert len(done) >= 2 and done == sorted(done) and done[-1] == 40 and seen["progress"][-1][1] == 40
    again = seen["tag_again"]
    assert (again["tagged"], again["skipped"]) == (0, 40)  # resumed: nothing tagged twice
    assert seen["tag_out_refused"].is_error and not (world["outside"] / "t.jsonl").exists()
    from clipzero.labelcache import default_label_cache
    from clipzero.prompts import load_templates, normalize_label

    keys = [(seen["classify"]["model"], load_templates("photo").content_hash, normalize_label(label))
            for label in ("red", "green", "blue")]  # fmt: skip
    assert len(default_label_cache().get_many(keys)) == 3  # the CLI's label cache: a CLI run encodes none again

    from clipzero import load_model

    encoder = load_model("clipzero-shapes", precision="fp32")
    embedded = seen["embed"]
    np.testing.assert_allclose(embedded["texts"], encoder.encode_texts(["a red circle", "红色圆形"]), atol=1e-5)
    np.testing.assert_allclose(embedded["images"], encoder.encode_images([examples[0]]), atol=1e-5)
    assert embedded["dim"] == encoder.embed_dim

    assert seen["search"]["store"] == "photos" and Path(seen["search"]["results"][0]["path"]).name == "red-circle.png"
    assert seen["describe"]["descriptions"] == {"red circle": ["round", "red", "smooth edge"]}
    assert "red circle" in llm_server.user_text()
    assert seen["models"]["running"] == "clipzero-shapes"
    assert any(m["spec"] == "clipzero-shapes" and m["cached"] for m in seen["models"]["models"])
    assert seen["sets"]["default"] == "photo" and {"photo", "photo-zh", "ensemble-en"} <= {
        s["name"] for s in seen["sets"]["sets"]}
    assert "clipzero://stores/photos" in seen["resources"] and "clipzero://template-sets/photo-zh" in seen["resources"]
    assert seen["store_info"]["images"] == len(examples)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clipzero mcp exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError("clipzero mcp --http did not start within 120 s")


@pytest.mark.slow
def test_streamable_http_needs_the_key_and_serves_the_sdk_client(tmp_path: Path) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    log = tmp_path / "mcp.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "clipzero", "mcp", "--http", "--port", str(port), "--model", "clipzero-shapes",
             "--api-key", KEY, "--templates", "photo"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        _wait_for_port(port, process, log)
        url = f"http://127.0.0.1:{port}/mcp"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
            refused = httpx.post(url, json=body, headers=headers, timeout=10)
            assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]

        async def session() -> tuple[list[str], Any, Any]:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx2.AsyncClient(headers=headers, timeout=60) as http, streamable_http_client(
                url, http_client=http
            ) as (read, write, *_), ClientSession(read, write) as client:
                await client.initialize()
                tools = await client.list_tools()
                image = _data_url(EXAMPLES / "blue-star.png")
                result = await client.call_tool("classify_images", {"images": [image], "labels": ["blue star",
                                                "red circle", "green cross"]})  # fmt: skip
                path = await client.call_tool("classify_images", {"images": [str(EXAMPLES / "blue-star.png")],
                                                                  "labels": ["blue star", "red circle"]})  # fmt: skip
                return [t.name for t in tools.tools], result, path

        names, result, path = anyio.run(session)
        assert "classify_images" in names
        assert not result.is_error and result.structured_content["results"][0]["label"] == "blue star"
        assert path.is_error and "no --root" in path.content[0].text  # no roots: data URLs only
        assert "MCP on http://127.0.0.1" in log.read_text()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_tools_prints_the_mcp_definitions_as_openai_functions(tmp_path: Path) -> None:
    from clipzero.tools import json_schema_tools

    run = [sys.executable, "-m", "clipzero", "tools"]
    openai = json.loads(subprocess.run([*run, "--format", "openai"], capture_output=True, check=True).stdout)
    plain = json.loads(subprocess.run([*run, "--format", "json-schema"], capture_output=True, check=True).stdout)
    assert plain == json_schema_tools()
    assert [t["function"]["name"] for t in openai] == [t["name"] for t in plain]
    for function, tool in zip(openai, plain):
        assert function["type"] == "function"
        assert function["function"]["parameters"] == tool["inputSchema"]
        assert function["function"]["description"] == tool["description"]
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        jsonschema.Draft202012Validator.check_schema(tool["outputSchema"])


def test_tag_folder_writes_nothing_outside_the_root_and_errors_never_echo_arguments(tmp_path: Path) -> None:
    world = _world(tmp_path)
    root, outside = world["root"], world["outside"]
    victim = outside / "keep.txt"
    victim.write_text("a file outside the root\n")
    (root / "tags.jsonl.errors.jsonl").symlink_to(victim)  # the side file, linked out of the root
    (root / "tags.jsonl.lock").symlink_to(outside / "made-by-lock.txt")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "clipzero", "mcp", "--model", "clipzero-shapes", "--precision", "fp32", "--templates", "photo",
              "--root", str(root)],
        env=dict(os.environ),
        cwd=str(tmp_path),
    )  # fmt: skip

    async def session() -> dict[str, Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            folder = str(root / "examples")
            linked = await client.call_tool("tag_folder", {"folder": folder, "labels": ["red", "blue"],
                                                           "out": str(root / "tags.jsonl")})  # fmt: skip
            csv_out = str(root / "tags.csv")
            tagged = await client.call_tool("tag_folder", {"folder": folder, "labels": ["=red", "+blue", "@green"],
                                                           "out": csv_out})  # fmt: skip
            huge = await client.call_tool("classify_images", {"images": [folder + "/red-circle.png"],
                                                              "labels": ["a", "b"], "top_k": "x" * 3_000_000})
            blob = await client.call_tool("classify_images", {"images": ["x" * 3_000_000], "labels": ["a", "b"]})
            mixed = await client.call_tool("classify_images", {"images": [
                "examples/blue-star.png", "/etc/hostname", "link-to-secret.png", "examples/missing.png"],
                "labels": ["blue star", "red circle"]})  # fmt: skip
            relative = await client.call_tool("tag_folder", {"folder": "examples", "labels": ["red", "blue"],
                                                             "out": "relative.jsonl"})  # fmt: skip
            return {"linked": linked, "tagged": tagged, "huge": huge, "blob": blob, "mixed": mixed,
                    "relative": relative}  # fmt: skip

    seen = anyio.run(session)
    assert seen["linked"].is_error and "refused" in seen["linked"].content[0].text
    assert victim.read_text() == "a file outside the root\n"  # before: truncated and overwritten
    assert not (outside / "made-by-lock.txt").exists() and not (root / "tags.jsonl").exists()
    assert not seen["tagged"].is_error, seen["tagged"].content[0].text
    text = (root / "tags.csv").read_text()
    assert "'=red" in text or "'+blue" in text or "'@green" in text
    assert not any(line.split(",")[2].startswith(("=", "+", "@")) for line in text.splitlines()[1:])
    message = seen["huge"].content[0].text
    assert seen["huge"].is_error and len(message) < 500 and "top_k" in message  # the field, not its value
    assert seen["blob"].is_error and len(seen["blob"].content[0].text) < 500  # before: 3 MB echoed back
    # Relative paths are read inside the first root (before: the server's working folder), and a refused or missing
    # path is an error in its place while the rest are classified (before: one refused path failed the call).
    assert not seen["mixed"].is_error, seen["mixed"].content[0].text
    results = seen["mixed"].structured_content["results"]
    assert results[0]["image"] == "examples/blue-star.png" and results[0]["label"] == "blue star"
    assert [r["label"] for r in results[1:]] == [None, None, None]
    assert all("refused" in r["error"] for r in results[1:]) and SECRET not in json.dumps(results)
    assert not seen["relative"].is_error and (root / "relative.jsonl").exists() and not (tmp_path / "relative.jsonl"
                                                                                          ).exists()  # fmt: skip


def test_a_server_without_a_store_or_an_llm_lists_only_the_tools_that_can_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPZERO_LLM")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "clipzero", "mcp", "--model",
                                   "clipzero-shapes", "--root", str(EXAMPLES)],
                                   env={**env, "CLIPZERO_HOME": str(tmp_path / "home")})  # fmt: skip

    async def session() -> tuple[set[str], str, str]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            listed = {tool.name for tool in (await client.list_tools()).tools}
            search = await client.call_tool("search_images", {"text": "a red circle"})
            describe = await client.call_tool("describe_labels", {"labels": ["red circle"]})
            assert search.is_error and describe.is_error
            return listed, search.content[0].text, describe.content[0].text

    listed, search, describe = anyio.run(session)
    assert listed == {"classify_images", "tag_folder", "embed", "list_models", "list_template_sets"}
    assert "not offered" in search and "--store" in search
    assert "not offered" in describe and "--llm-url" in describe
