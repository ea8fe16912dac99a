"""The engine's shape: no function over 80 lines (the package's import graph, cycles
included, is checked in tests/test_imports.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import numsweep.engine

ENGINE = Path(numsweep.engine.__file__).parent
MAX_FUNCTION_LINES = 80


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path))
            for path in sorted(ENGINE.glob("*.py"))}


def test_no_engine_function_is_longer_than_80_lines() -> None:
    long = [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, tree in _trees().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long
