"""The roots rule every door uses for a path a client names (clipzero.access.inside_roots)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipzero.access import inside_roots
from clipzero.errors import ClientPathRefused


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.png").write_bytes(b"y")
    (root / "out-link.png").symlink_to(outside / "b.png")
    (root / "out-dir").symlink_to(outside)
    (root / "in-link.png").symlink_to(root / "sub" / "a.png")
    os.mkfifo(root / "pipe.png")
    return {"root": root, "outside": outside}


def test_files_inside_a_root_are_accepted_resolved(tree: dict[str, Path]) -> None:
    root = tree["root"]
    assert inside_roots(root / "sub" / "a.png", [root]) == (root / "sub" / "a.png").resolve()
    assert inside_roots(root / "in-link.png", [root]) == (root / "sub" / "a.png").resolve()
    assert inside_roots(str(root / "sub" / ".." / "sub" / "a.png"), [tree["outside"], root]).name == "a.png"
    assert inside_roots(root / "sub", [root], kind="folder") == (root / "sub").resolve()


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("out-link.png", "file", "outside"),
        ("out-dir/b.png", "file", "outside"),
        ("sub/../../outside/b.png", "file", "outside"),
        ("pipe.png", "file", "not a regular file"),
        ("sub", "file", "not a regular file"),
        ("sub/a.png", "folder", "not a folder"),
        ("missing.png", "file", "no such file"),
        ("sub/a.png\x00.txt", "file", "malformed"),
        ("pipe.png", "output", "not a regular file"),
        ("no-folder/out.jsonl", "output", "folder does not exist"),
    ],
)
def test_anything_else_is_refused_with_the_reason(tree: dict[str, Path], name: str, kind: str, reason: str) -> None:
    with pytest.raises(ClientPathRefused, match=reason):
        inside_roots(str(tree["root"]) + "/" + name, [tree["root"]], kind=kind)


def test_no_roots_refuse_every_path_and_say_how_to_send_images(tree: dict[str, Path]) -> None:
    with pytest.raises(ClientPathRefused, match="data URL"):
        inside_roots(tree["root"] / "sub" / "a.png", [])


def test_an_output_file_may_be_new_but_not_outside(tree: dict[str, Path]) -> None:
    root = tree["root"]
    assert inside_roots(root / "sub" / "new.jsonl", [root], kind="output") == (root / "sub" / "new.jsonl").resolve()
    with pytest.raises(ClientPathRefused, match="outside"):
        inside_roots(root / "out-dir" / "new.jsonl", [root], kind="output")
