"""Code that stays readable: no function over 60 lines (docstring included), no core module over
about 400 lines (STYLE.md: a core file past that holds two ideas)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_layers import CORE, GRAPH, ROOT, layer

MAX_FUNCTION_LINES = 60
MAX_CORE_LINES = 420
FILES = sorted(p for top in ("mmgpt", "encoders", "datasets") for p in (ROOT / top).rglob("*.py"))


def long_functions(path: Path, limit: int) -> list[str]:
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_longer_than_a_screen(path):
    assert not long_functions(path, MAX_FUNCTION_LINES)


def test_core_modules_hold_one_idea_each():
    sizes = {}
    for path in FILES:
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(["mmgpt", *rel.parts[1:]]) if rel.parts[0] == "mmgpt" else None
        if name and name in CORE and layer(name) == "core" and name in GRAPH:
            sizes[name] = len(path.read_text().splitlines())
    assert sizes and max(sizes.values()) <= MAX_CORE_LINES, {k: v for k, v in sizes.items() if v > MAX_CORE_LINES}


def test_the_checker_sees_a_long_function(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n" + "    x = 1\n" * 70)
    assert long_functions(src, MAX_FUNCTION_LINES) == ["f (71 lines, line 1)"]
