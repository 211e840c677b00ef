"""Every source file stays under 400 lines and every function under 60 (STYLE habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import depthlens

SRC = Path(depthlens.__file__).parent
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function, nested ones too, longer than ``limit``.

    The length runs from the ``def`` line to the last line of the body (decorators excluded).
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > limit:
                out.append((node.name, node.lineno, n))
    return out


def test_scan_finds_a_planted_long_function() -> None:
    body = "".join(f"            x{i} = {i}\n" for i in range(60))
    src = (
        "def short():\n    return 1\n\n"
        "class C:\n    def outer(self):\n        def inner():\n" + body
    )
    found = long_functions(src)
    # inner: its def line + 60 body lines = 61; outer adds its own def line: 62; short: 2
    assert sorted((name, n) for name, _, n in found) == [("inner", 61), ("outer", 62)]
    assert long_functions(src, limit=62) == []


def test_no_source_function_over_60_lines() -> None:
    bad = [
        f"{f.relative_to(SRC)}:{line} {name} ({n} lines)"
        for f in sorted(SRC.rglob("*.py"))
        for name, line, n in long_functions(f.read_text(encoding="utf-8"))
    ]
    assert not bad, "functions over 60 lines (split them into named helpers):\n" + "\n".join(bad)


def test_no_source_file_over_400_lines() -> None:
    sizes = {f: len(f.read_text(encoding="utf-8").splitlines()) for f in sorted(SRC.rglob("*.py"))}
    assert len(sizes) > 50  # the scan really reads the package
    bad = [f"{f.relative_to(SRC)} ({n} lines)" for f, n in sizes.items() if n > MAX_FILE_LINES]
    assert not bad, "files over 400 lines (split them by concept):\n" + "\n".join(bad)
