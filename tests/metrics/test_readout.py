"""``--lens``: the logit lens lives with the lens metrics; the tuned lens registers on top.

Profiling, the causal analyses and early exit pick a readout by name through
:mod:`depthlens.metrics.readout` and never import ``depthlens.tuned`` (which trains lenses
and sits above them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import wrap_tiny

import depthlens
from depthlens.errors import DepthlensError
from depthlens.metrics.lens import Lens
from depthlens.metrics.readout import READOUTS, check_lens_arg, readout_for

SRC = Path(depthlens.__file__).parent


def _imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("package", ["profiling", "causal", "exit", "metrics"])
def test_lens_users_do_not_import_the_tuned_package(package: str) -> None:
    bad = [
        f"{f.relative_to(SRC)}: {m}"
        for f in sorted((SRC / package).rglob("*.py"))
        for m in _imported(f)
        if m == "depthlens.tuned" or m.startswith("depthlens.tuned.")
    ]
    assert not bad, "import depthlens.metrics.readout instead:\n" + "\n".join(bad)


def test_logit_and_tuned_are_registered_readouts() -> None:
    assert READOUTS.names()[:2] == ["logit", "tuned"]  # tuned registers itself on lookup
    lens, info = readout_for(wrap_tiny("llama"), "logit")
    assert isinstance(lens, Lens) and info == {"kind": "logit"}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tuned", "did you mean 'tuned:DIR'"),
        ("tuned:", "did you mean 'tuned:DIR'"),
        ("logits", "did you mean 'logit'"),
        ("logit:x", "--lens"),
        ("tuned:/no/such/dir", "not found"),
    ],
)
def test_bad_lens_is_one_error_before_any_load(spec: str, message: str) -> None:
    with pytest.raises(DepthlensError, match=message):
        check_lens_arg(spec)
