"""Module names of architectures live in ``depthlens.arch`` only (STYLE habit 3).

Code outside the arch package asks the family's ``ArchSpec`` where the attention, its norm
or the LoRA targets are; a string such as "self_attn" or "mlp.down_proj" elsewhere is a
hard-coded layout that breaks on the next family. The names checked are those the family
table itself uses (every dotted-path part with an underscore: "input_layernorm", "q_proj",
"c_attn", …), so a new family's names are checked as soon as it is added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import depthlens
from depthlens.arch.families import FAMILIES

SRC = Path(depthlens.__file__).parent
# The ArchSpec fields that hold module paths (from the model root or from a block).
PATH_FIELDS = (
    "blocks",
    "attn",
    "mlp",
    "mlp_out_proj",
    "final_norm",
    "unembed",
    "attn_module",
    "attn_norm",
    "mlp_module",
    "mlp_norm",
    "attn_linears",
    "mlp_linears",
)
# Files that define or write a layout themselves rather than read a loaded model's:
ALLOWED = {
    "train/model.py": "defines the lab model's own modules",
    "train/export.py": "writes a lab model as a Llama checkpoint, whose names it must spell",
}


def table_names() -> set[str]:
    """Every module-path part with an underscore in the family table."""
    names: set[str] = set()
    for spec in FAMILIES.values():
        for field in PATH_FIELDS:
            value = getattr(spec, field)
            for path in value if isinstance(value, tuple) else (value,):
                names.update(part for part in (path or "").split(".") if "_" in part)
    return names


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def named_in(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every string constant in ``source`` (not a docstring) using a name."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for word in re.findall(r"[A-Za-z0-9_]+", node.value):
                if word in names:
                    hits.append((node.lineno, word))
    return hits


def test_the_names_cover_the_common_layouts() -> None:
    names = table_names()
    for n in ("self_attn", "input_layernorm", "down_proj", "q_proj", "c_attn", "ln_1"):
        assert n in names, n
    assert "model" not in names and "mlp" not in names  # too common to mean a layout


def test_the_scan_finds_a_planted_name() -> None:
    src = 'x = getattr(block, "self_attn")\ny = f"{p}.mlp.down_proj.weight"\n'
    assert [w for _, w in named_in(src, table_names())] == ["self_attn", "down_proj"]
    assert named_in('"""Reads ``self_attn``."""\n', table_names()) == []


def test_no_module_name_outside_the_arch_package() -> None:
    names = table_names()
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("arch/") or rel in ALLOWED:
            continue
        found += [f"{rel}:{line}: '{w}'" for line, w in named_in(path.read_text(), names)]
    assert not found, "ask the ArchSpec instead of naming modules:\n" + "\n".join(found)
