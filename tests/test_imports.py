"""The import graph of the numsweep package, read from the source: no cycles, and imports that
flow engine <- sweeps -> storage, analysis reading storage, only ``cli`` and ``api`` wiring
them.

Every ``import`` and ``from ... import`` counts, those inside functions (lazy imports) and
under ``if TYPE_CHECKING:`` too: a lazy import still ties the two modules together.
``from numsweep.x import y`` is an edge to ``numsweep.x`` (Python runs it first: for a package,
its ``__init__``) and to ``numsweep.x.y`` when that is a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "numsweep"
PACKAGE = "numsweep"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from`` import names, relative imports made absolute."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imported(module: str, path: Path, modules: set[str]) -> Iterator[str]:
    """The numsweep modules ``module`` (at ``path``) imports, anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield _known(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            yield _known(source, modules)  # imported first, whatever the names are
            for alias in node.names:
                name = f"{source}.{alias.name}"
                if name in modules:
                    yield name


def _known(name: str, modules: set[str]) -> str:
    """``name`` or the nearest package above it that is a module of the package."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


@lru_cache(maxsize=1)
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the numsweep modules it imports (itself left out)."""
    files = module_files()
    modules = set(files)
    return {m: frozenset(i for i in imported(m, p, modules) if i != m)
            for m, p in files.items()}


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # the package has a few hundred modules: recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _package(module: str) -> str:
    """``numsweep.sweeps.runner`` -> ``sweeps``; a top-level module is its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles_in(package: str) -> list[list[str]]:
    """The cycles with a module of ``package`` in them."""
    return [c for c in cycles(import_graph()) if any(_package(m) == package for m in c)]


def imports_from(package: str, forbidden: tuple[str, ...],
                 graph: dict[str, frozenset[str]] | None = None) -> list[str]:
    """``module -> imported`` for each import of a ``forbidden`` package by ``package``."""
    graph = import_graph() if graph is None else graph
    return sorted(f"{m} -> {i}" for m, targets in graph.items() if _package(m) == package
                  for i in targets if _package(i) in forbidden)


def _cycle_text(found: list[list[str]]) -> str:
    return "; ".join(" <-> ".join(c) for c in found)


def test_the_graph_sees_lazy_imports_and_names_made_modules() -> None:
    graph = import_graph()
    # a function-level import in cli.py, and `from numsweep.sweeps import runner`-style names
    assert "numsweep.analysis.queries" in graph["numsweep.cli"]
    assert "numsweep.sweeps.guards" in graph["numsweep.sweeps.single"]
    assert "numsweep.engine" in graph["numsweep.sweeps.worker"]  # a name of its __init__
    assert "numsweep.engine.layers" in graph["numsweep.engine.networks"]  # import a.b as b


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    package = tmp_path / "numsweep"
    files = {"__init__.py": "", "a/__init__.py": "from .b import thing\n",
             "a/b.py": "def f():\n    import numsweep.c as c\n    from .. import d\n",
             "a/e.py": "from . import b\nfrom numsweep.a.b import thing\nimport os\n",
             "c.py": "if TYPE_CHECKING:\n    from numsweep.a import e\n", "d.py": ""}
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    found = module_files(package)
    edges = {m: set(imported(m, p, set(found))) for m, p in found.items()}
    assert edges == {
        "numsweep": set(), "numsweep.d": set(),
        "numsweep.a": {"numsweep.a.b"},  # relative, inside a package's __init__
        "numsweep.a.b": {"numsweep.c", "numsweep", "numsweep.d"},  # lazy ones too
        "numsweep.a.e": {"numsweep.a", "numsweep.a.b"},
        "numsweep.c": {"numsweep.a", "numsweep.a.e"},  # under TYPE_CHECKING too
    }


def test_cycles_finds_every_strongly_connected_component() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
             "d": frozenset({"e"}), "e": frozenset({"d", "a"}), "f": frozenset({"a"})}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_imports_from_names_each_forbidden_edge() -> None:
    graph = {"numsweep.engine.train": frozenset({"numsweep.sweeps.worker", "numsweep.errors"}),
             "numsweep.sweeps.single": frozenset({"numsweep.engine"})}
    assert imports_from("engine", ("sweeps",), graph) == \
        ["numsweep.engine.train -> numsweep.sweeps.worker"]
    assert imports_from("sweeps", ("storage",), graph) == []


PACKAGES = ("engine", "sweeps", "storage", "analysis", "export")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_in(package: str) -> None:
    found = cycles_in(package)
    assert not found, f"import cycles: {_cycle_text(found)}"


def test_no_import_cycle_outside_the_packages() -> None:
    found = [c for c in cycles(import_graph()) if not {_package(m) for m in c} & set(PACKAGES)]
    assert not found, f"import cycles: {_cycle_text(found)}"


WIRING = ("cli", "api")


@pytest.mark.parametrize(("package", "forbidden"), [
    ("engine", ("sweeps", "storage", "analysis", "export", *WIRING)),
    ("storage", ("engine", "sweeps", "analysis", "export", *WIRING)),
    ("sweeps", ("analysis", "export", *WIRING)),
    ("analysis", ("sweeps", "engine", "export", *WIRING)),
    ("export", ("sweeps", "engine", *WIRING)),
])
def test_imports_flow_engine_sweeps_storage(package: str, forbidden: tuple[str, ...]) -> None:
    """engine <- sweeps -> storage; analysis (and export) read storage; cli and api wire."""
    wrong = imports_from(package, forbidden)
    assert not wrong, f"{package} imports what it must not: {', '.join(wrong)}"
