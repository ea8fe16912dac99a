"""The engine's shape: short functions, and modules that import each other without a cycle
(function-level imports, and imports of the package ``numsweep.engine`` itself, count)."""

from __future__ import annotations

import ast
from pathlib import Path

import numsweep.engine

ENGINE = Path(numsweep.engine.__file__).parent
MAX_FUNCTION_LINES = 80


def _trees() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path))
            for path in sorted(ENGINE.glob("*.py"))}


def _engine_imports(tree: ast.Module) -> set[str]:
    """The engine modules a module imports anywhere in it; "__init__" for the package itself
    (``from numsweep.engine import x`` runs the package and takes x from it)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "numsweep.engine":
                names += [f"numsweep.engine.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["numsweep", "engine"]:
                found.add(parts[2] if len(parts) > 2 else "__init__")
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return [*path[path.index(v):], v]
            if v not in state and (found := visit(v)):
                return found
        state[u] = 2
        path.pop()
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_no_engine_function_is_longer_than_80_lines() -> None:
    long = [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, tree in _trees().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_engine_modules_import_each_other_without_a_cycle() -> None:
    graph = {module: _engine_imports(tree) - {module} for module, tree in _trees().items()}
    assert graph.get("__init__")  # the package imports its modules
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_import_graph_sees_package_and_function_level_imports() -> None:
    tree = ast.parse("from numsweep.engine import layers\n"
                     "def f():\n    from numsweep.engine.group import train_group\n")
    assert _engine_imports(tree) == {"__init__", "layers", "group"}
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
