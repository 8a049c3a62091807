"""The service's trust rules as functions: upload paths, client templates, the key, zip reading, label limits."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from clipzero.errors import LabelError, RequestError, TemplateError
from clipzero.service.guard import (
    SESSION_COOKIE,
    ClientPathRefused,
    check_labels,
    client_templates,
    file_arguments,
    key_matches,
    session_token,
    uploaded_file,
)
from clipzero.service.uploads import UploadLimits, expand_uploads


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    (folder / "abc").mkdir(parents=True)
    (folder / "abc" / "photo.png").write_bytes(b"png")
    return folder


def test_only_regular_files_inside_the_upload_folder_pass(root: Path, tmp_path: Path) -> None:
    assert uploaded_file(root / "abc" / "photo.png", root) == (root / "abc" / "photo.png").resolve()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "abc" / "link.png")
    os.mkfifo(root / "abc" / "pipe.png")
    refused = [
        outside,
        root / "abc" / ".." / ".." / "secret.txt",  # climbs out
        root / "abc" / "link.png",  # a link to a file outside
        root / "abc" / "pipe.png",  # reading it would block forever
        root / "abc",  # a folder
        root,
        root / "abc" / "missing.png",
        "/dev/zero",
        "",
        "abc\x00.png",
        f"{root}-sibling/x.png",  # a name that merely starts like the folder
    ]
    for path in refused:
        with pytest.raises(ClientPathRefused) as caught:
            uploaded_file(path, root)
        assert "secret" not in str(caught.value).replace("secret.txt", "")


def test_file_arguments_finds_every_file_reference() -> None:
    payload = {"data": [[{"path": "/a"}, {"meta": {"_type": "gradio.FileData"}}], "text", {"nested": [{"path": 3}]}]}
    assert sorted(str(item.get("path")) for item in file_arguments(payload)) == ["/a", "3", "None"]
    assert list(file_arguments({"data": ["no files", 1, None]})) == []


def test_client_templates_are_names_or_inline_never_paths(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("a secret {label} template\n")
    assert client_templates(None) is None and client_templates("  ") is None
    assert client_templates("photo") == "photo"
    assert client_templates(["a {label}.", "an {label}!"]) == ("a {label}.", "an {label}!")
    assert client_templates("a {label}.\nthe {label}.") == ("a {label}.", "the {label}.")
    for given in (str(secret), "../prompts/zeroshot/photo.txt", "prompts/zeroshot/photo", "no-such-set"):
        with pytest.raises(TemplateError) as caught:
            client_templates(given)
        assert "a secret" not in str(caught.value)
    with pytest.raises(TemplateError):
        client_templates(["fine {label}", 3])  # type: ignore[list-item]
    with pytest.raises(TemplateError, match="limit of 100"):
        client_templates([f"{{label}} {i}" for i in range(101)])


def test_the_key_is_bearer_x_api_key_or_the_session_cookie() -> None:
    key = "s3cret"
    assert key_matches(key, {"x-api-key": key}, {})
    assert key_matches(key, {"authorization": f"Bearer {key}"}, {})
    assert key_matches(key, {"authorization": f"bearer {key}"}, {})
    assert key_matches(key, {}, {SESSION_COOKIE: session_token(key)})
    assert session_token(key) != key and key not in session_token(key)
    for headers, cookies in (
        ({}, {}),
        ({"authorization": key}, {}),  # no scheme
        ({"authorization": f"Basic {key}"}, {}),
        ({"x-api-key": "wrong"}, {}),
        ({}, {SESSION_COOKIE: key}),  # the key itself is not a session
        ({"x-api-key": "wrong"}, {SESSION_COOKIE: session_token(key)}),  # a wrong key is not rescued by a cookie
    ):
        assert not key_matches(key, headers, cookies), (headers, cookies)


def test_label_limits() -> None:
    check_labels(["a", "b"], max_labels=2, max_chars=5)
    with pytest.raises(LabelError, match="3 labels"):
        check_labels(["a", "b", "c"], max_labels=2, max_chars=5)
    with pytest.raises(LabelError, match=r"label 2 .* 6 characters"):
        check_labels(["a", "x" * 6], max_labels=2, max_chars=5)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_uploads_are_streamed_within_limits(root: Path) -> None:
    (root / "abc" / "pack.zip").write_bytes(
        _zip({"a.png": b"A" * 10, "notes.txt": b"skip me", "big.png": bytes(5000), "b.jpg": b"B" * 10,
              "c.png": b"C" * 900, "d.png": b"D"})
    )  # fmt: skip
    # What is decompressed counts: 10 + 1,001 (big.png, read one byte past the limit) + 10 + 900 = 1,921.
    limits = UploadLimits(max_file_bytes=1000, max_entries=10, max_unzip_bytes=1921)
    items = list(expand_uploads([str(root / "abc" / "pack.zip"), str(root / "abc" / "photo.png")], root, limits))
    summary = [(i.name, i.data is not None, (i.error or "")[:20]) for i in items]
    assert summary == [
        ("pack.zip/a.png", True, ""),
        ("pack.zip/big.png", False, "over 1,000 bytes unc"),  # read only to the limit, whatever its header says
        ("pack.zip/b.jpg", True, ""),
        ("pack.zip/c.png", True, ""),
        ("pack.zip/d.png", False, "not read: pack.zip p"),  # the request's total was spent
        ("photo.png", True, ""),
    ]
    with pytest.raises(RequestError, match="over this server's limit of 3"):
        list(expand_uploads([str(root / "abc" / "pack.zip")], root, UploadLimits(1000, 3, 10**6)))
    with pytest.raises(ClientPathRefused):
        list(expand_uploads([str(root / "abc" / "photo.png"), "/etc/passwd"], root, limits))
