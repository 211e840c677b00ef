"""The arch package's modules import each other without a circle, at any level.

The table, the record, the wiring and the generic fallback once imported each other inside
functions to hide a circle; now each sits on the ones below it (wiring < layout < families
< binding < generic < spec, kv beside them), and ``spec`` is only the package's front.
"""

from __future__ import annotations

import ast
from pathlib import Path

import depthlens.arch

ARCH = Path(depthlens.arch.__file__).parent


def _arch_imports(path: Path) -> set[str]:
    """The ``depthlens.arch`` modules ``path`` imports anywhere (in functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("depthlens.arch."):
            out.add(str(node.module).split(".")[2])
    return out


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as [a, b, …, a], or None (depth-first search)."""
    done: set[str] = set()

    def visit(mod: str, stack: list[str]) -> list[str] | None:
        if mod in stack:
            return [*stack[stack.index(mod) :], mod]
        if mod in done:
            return None
        for dep in sorted(graph.get(mod, ())):
            if found := visit(dep, [*stack, mod]):
                return found
        done.add(mod)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_arch_modules_form_no_import_circle() -> None:
    graph = {p.stem: _arch_imports(p) - {p.stem} for p in ARCH.glob("*.py")}
    assert find_circle(graph) is None, " -> ".join(find_circle(graph) or [])
    assert "spec" not in set().union(*graph.values())  # the front is imported by no one


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from depthlens.arch.spec import FAMILIES\n")
    assert _arch_imports(f) == {"spec"}  # an import inside a function counts
    graph = {"spec": {"wiring"}, "wiring": {"layout"}, "layout": {"spec"}, "kv": {"layout"}}
    assert find_circle(graph) == ["layout", "spec", "wiring", "layout"]
    graph["layout"] = set()
    assert find_circle(graph) is None
