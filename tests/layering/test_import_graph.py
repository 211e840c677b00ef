"""Subpackages depend on each other without cycles, and only through their public names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import depthlens

SRC = Path(depthlens.__file__).parent
SUBPACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())


def _imports(path: Path) -> list[str]:
    """Absolute ``depthlens.*`` module names imported by ``path`` (typing-only ones too)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m.startswith("depthlens.")]


def subpackage_graph() -> dict[str, dict[str, list[str]]]:
    """{subpackage: {subpackage it imports: [files doing so]}}."""
    graph: dict[str, dict[str, list[str]]] = {s: {} for s in SUBPACKAGES}
    for sub in SUBPACKAGES:
        for f in sorted((SRC / sub).rglob("*.py")):
            for mod in _imports(f):
                target = mod.split(".")[1]
                if target in graph and target != sub:
                    graph[sub].setdefault(target, []).append(str(f.relative_to(SRC)))
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, …, a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    g = {"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    g["c"] = {}
    assert find_cycle(g) is None


def test_subpackages_form_no_import_cycle() -> None:
    graph = subpackage_graph()
    assert {"cut", "evaluate", "profiling", "causal", "metrics"} <= set(graph)
    cycle = find_cycle(graph)
    if cycle:
        where = [f"{a} -> {b}: {', '.join(graph[a][b])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("import cycle between subpackages:\n" + "\n".join(where))


def test_every_module_imports() -> None:
    """Each module imports on its own (a cycle at import time would fail here)."""
    for mod in pkgutil.walk_packages(depthlens.__path__, "depthlens."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)


def test_no_private_names_across_subpackages() -> None:
    """Causal, cut and the others use each other's public names only (no ``_helper``)."""
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        sub = f.relative_to(SRC).parts[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if len(parts) > 1 and parts[1] != sub.removesuffix(".py"):
                    bad += [
                        f"{f.relative_to(SRC)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert not bad, bad
