"""No two modules of depthlens import each other, directly or round a loop.

The subpackage test (``test_import_graph.py``) orders the packages; this one looks inside
them. Every import counts, wherever it is written: at the top, inside a function (a circle
hidden there still means neither module can be read without the other) or under
``TYPE_CHECKING``. Importing ``depthlens.x.y`` is an edge to that module; importing a name
from a package (``from depthlens.cut import plan_cut``) is an edge to its ``__init__``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from test_import_graph import find_cycle

import depthlens

SRC = Path(depthlens.__file__).parent


def module_files(src: Path) -> dict[str, Path]:
    """{dotted module name: file} of every module under ``src`` (a package directory)."""
    out: dict[str, Path] = {}
    for f in sorted(src.rglob("*.py")):
        parts = list(f.relative_to(src.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` lives in: itself, or the closest package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, anywhere in the file."""
    root = next(iter(modules)).split(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # ``from pkg import mod`` names a module, else a name in pkg
                full = f"{node.module}.{a.name}"
                out.add(full if full in modules else _target(node.module, modules) or "")
        elif isinstance(node, ast.Import):
            out.update(_target(a.name, modules) or "" for a in node.names)
    return {m for m in out if m.split(".")[0] == root}


def module_graph(src: Path = SRC) -> dict[str, dict[str, list[str]]]:
    """{module: {module it imports: [its file]}} over every module under ``src``."""
    modules = module_files(src)
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in modules}
    for mod, f in modules.items():
        for target in imported_modules(f, modules) - {mod}:
            graph[mod][target] = [str(f.relative_to(src.parent))]
    return graph


@functools.cache
def src_graph() -> dict[str, dict[str, list[str]]]:
    """The module graph of depthlens itself (parsed once per test session)."""
    return module_graph(SRC)


def test_graph_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.a import A\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.a import A\n"
    )
    (pkg / "sub" / "c.py").write_text("from pkg.sub import A\n")
    graph = module_graph(pkg)
    assert set(graph["pkg.sub.a"]) == {"pkg.sub.b"}  # ``from pkg.sub import b``: a module
    assert set(graph["pkg.sub.b"]) == {"pkg.sub.a"}
    assert set(graph["pkg.sub.c"]) == {"pkg.sub"}  # a name from the package's __init__
    assert find_cycle(graph) == ["pkg.sub.a", "pkg.sub.b", "pkg.sub.a"]
    (pkg / "sub" / "b.py").write_text("")
    assert find_cycle(module_graph(pkg)) is None


def test_no_module_import_cycle() -> None:
    graph = src_graph()
    assert {"depthlens.cut.methods", "depthlens.arch.spec", "depthlens.registry"} <= set(graph)
    cycle = find_cycle(graph)
    if cycle:
        where = [f"{a} -> {b} ({graph[a][b][0]})" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError(
            "import circle between modules (move what both need into a module below them):\n"
            + "\n".join(where)
        )


#: (lower, upper): the lower subpackage never imports the upper one, not even in a function.
#: The tuned lens is built on the logit lens and the profile, never the other way round.
LAYERED = [
    ("metrics", "tuned"),
    ("capture", "tuned"),
    ("arch", "tuned"),
    ("profiling", "tuned"),
]


@pytest.mark.parametrize(("lower", "upper"), LAYERED)
def test_lower_subpackage_never_imports_upper(lower: str, upper: str) -> None:
    graph = src_graph()
    bad = [
        f"{graph[m][t][0]} imports {t}"
        for m in graph
        if m.startswith(f"depthlens.{lower}.") or m == f"depthlens.{lower}"
        for t in graph[m]
        if t.startswith(f"depthlens.{upper}.") or t == f"depthlens.{upper}"
    ]
    assert not bad, f"{lower}/ sits below {upper}/:\n" + "\n".join(bad)


def test_exit_reads_the_tuned_lens_only() -> None:
    """Early exit uses a trained lens as a readout; it does not reach into lens training."""
    graph = src_graph()
    used = {t for m in graph if m.startswith("depthlens.exit") for t in graph[m]}
    assert {t for t in used if t.startswith("depthlens.tuned")} <= {"depthlens.tuned.lens"}
