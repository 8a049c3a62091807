"""The layout rules: no import cycles, every module imports alone, no private names across modules, doors apart.

The import graph is read from the source (every ``import`` and ``from ... import``, at module level and inside
functions, except those under ``if TYPE_CHECKING``), so a lazy import that closes a loop counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "clipzero"


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported clipzero module, names taken from it) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, []))
                elif target in MODULES:
                    found.append((target, [alias.name]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names if alias.name in MODULES)
    return found


def graph() -> dict[str, set[str]]:
    """module -> the clipzero modules it imports (a package's own parents left out: importing a submodule runs
    them anyway)."""
    edges = {}
    for module in MODULES:
        targets = {t for t, _ in _imports(module) if t != module}
        edges[module] = {t for t in targets if not module.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_private_names_across_modules() -> None:
    reached = [
        f"{module} takes {name} from {target}"
        for module in MODULES
        for target, names in _imports(module)
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert reached == []
    for module in MODULES:  # and no module imports a private module of another package
        assert [t for t, _ in _imports(module) if t.split(".")[-1].startswith("_") and t != "clipzero.__main__"] == []


def test_doors_do_not_import_each_other_and_the_core_imports_no_door() -> None:
    edges = graph()
    doors = ("clipzero.cli", "clipzero.service", "clipzero.agent")
    for module, targets in edges.items():
        if module == "clipzero.__main__":  # `python -m clipzero` is the CLI's entry point
            continue
        door = next((d for d in doors if module == d or module.startswith(d + ".")), None)
        for target in targets:
            other = next((d for d in doors if target == d or target.startswith(d + ".")), None)
            if door is None:
                assert other is None, f"core module {module} imports the door {target}"
            elif other == "clipzero.cli" and door != "clipzero.cli":
                pytest.fail(f"{module} imports the CLI ({target})")
            elif other is not None and door != "clipzero.cli" and other != door:
                pytest.fail(f"the door {module} imports another door ({target})")
    commands = [m for m in MODULES if m.startswith("clipzero.cli.") and m != "clipzero.cli.options"]
    for module in commands:  # command modules share options, never each other
        assert not (edges[module] & set(commands)), f"{module} imports {edges[module] & set(commands)}"


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in edges.get(todo.pop(), set()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_layers_run_one_way() -> None:
    """The encoder sits below the pipeline (it decodes through clipzero.images), the store below the engines (it is
    handed one through the pipeline's Engine plug), and a model spec is checked without torch."""
    edges = graph()
    below = {
        "clipzero.encoder": {"clipzero.pipeline", "clipzero.ray_engine", "clipzero.zeroshot", "clipzero.tagging"},
        "clipzero.images": {"clipzero.encoder", "clipzero.pipeline"},
        "clipzero.modelspec": {"clipzero.encoder", "clipzero.models", "clipzero.transformers_model"},
    }
    below |= {m: {"clipzero.ray_engine", "clipzero.tagging"} for m in MODULES if m.startswith("clipzero.store")}
    for module, forbidden in below.items():
        assert not (_reach(edges, module) & forbidden), f"{module} reaches {_reach(edges, module) & forbidden}"


def test_every_module_is_under_about_400_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 430}
    assert long == {}


def test_every_module_imports_alone() -> None:
    """Each module in a fresh process of its own (forked after the third-party packages are loaded, so it costs
    clipzero's own import time only): an import-order dependency or a cycle at import time fails here."""
    script = (
        "import os, sys, importlib\n"
        "import numpy, PIL.Image, torch, open_clip, faiss\n"  # loaded once; each child imports clipzero afresh
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as exc:\n"
        "            sys.stderr.write(f'{name}: {type(exc).__name__}: {exc}\\n')\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    if os.waitpid(pid, 0)[1] != 0:\n"
        "        failed.append(name)\n"
        "print(' '.join(failed))\n"
    )
    names = [m for m in MODULES if m != "clipzero.__main__"]
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "", result.stderr[-3000:]
