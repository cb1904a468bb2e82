"""The import graph has the layers of docs/ARCHITECTURE.md: every arrow points down, and no loops.

Every ``import`` / ``from ... import`` statement in every module is read (inside functions too,
where lazy imports hide; not those under ``if TYPE_CHECKING:``), with the ``package-dir``
mapping of pyproject.toml (``encoders/`` is ``mmgpt.encoders``, ``datasets/`` is
``mmgpt.datasets``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = {"mmgpt": "mmgpt", "encoders": "mmgpt.encoders", "datasets": "mmgpt.datasets"}

# layer -> the layers it may import (itself included). Core modules are listed by name; every
# other mmgpt module is an app.
ALLOWED = {
    "errors": {"errors"},
    "datasets": {"errors", "datasets"},
    "config": {"errors", "config"},
    "encoders": {"errors", "config", "encoders"},
    "core": {"errors", "config", "datasets", "encoders", "core"},
    "apps": {"errors", "config", "datasets", "encoders", "core", "apps"},
}
CONFIG = {"mmgpt.config", "mmgpt.config_values", "mmgpt.resources"}
CORE = {"mmgpt", "mmgpt.tokenizer", "mmgpt.modalities", "mmgpt.adapters", "mmgpt.decoder", "mmgpt.processor",
        "mmgpt.batching", "mmgpt.feature_cache", "mmgpt.model", "mmgpt.generation", "mmgpt.precision",
        "mmgpt.safe_io", "mmgpt.pretrained", "mmgpt.hf"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("").parts
    parts = [TOPS[rel[0]], *rel[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    if module == "mmgpt.errors":
        return "errors"
    for prefix in ("mmgpt.datasets", "mmgpt.encoders"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix.split(".")[1]
    if module in CONFIG:
        return "config"
    return "core" if module in CORE else "apps"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, modules: set[str], source: str | None = None) -> set[str]:
    """The mmgpt modules ``path`` (or ``source`` as if it were that file) imports; ``from pkg
    import name`` counts as ``pkg.name`` when that is a module, else as ``pkg``."""
    found: set[str] = set()
    me = module_name(path)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
                pkg = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1])
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text() if source is None else source))
    return {m for m in found if m in modules and m != me}


def graph() -> dict[str, set[str]]:
    files = [p for top in TOPS for p in (ROOT / top).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) for p in files}


GRAPH = graph()


def test_the_layers_cover_the_core_modules():
    assert set(GRAPH) >= CORE, f"listed as core but missing: {CORE - set(GRAPH)}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_arrow_points_up(module):
    mine = layer(module)
    up = sorted(f"{m} ({layer(m)})" for m in GRAPH[module] if layer(m) not in ALLOWED[mine])
    assert not up, f"{module} ({mine}) imports a higher layer: {', '.join(up)}"


def test_no_import_loops():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                loop = [*stack[stack.index(n):], n]
                pytest.fail("import loop: " + " -> ".join(loop))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_checker_sees_lazy_imports_and_flags_them():
    """A function-level import of the model from datasets/ is found, and is an arrow upward."""
    probe = ROOT / "datasets" / "probe.py"
    src = "def f():\n    from mmgpt.model import MMGPT\n    return MMGPT\n"
    assert imports(probe, set(GRAPH), source=src) == {"mmgpt.model"}
    assert layer("mmgpt.datasets.probe") == "datasets" and layer("mmgpt.model") not in ALLOWED["datasets"]
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mmgpt.model import MMGPT\n"
    assert imports(probe, set(GRAPH), source=typed) == set()
