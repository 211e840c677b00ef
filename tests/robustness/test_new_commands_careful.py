"""The commands added since the last hardening get the same manners (issue 20 cases 4, 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depthlens.cli.main import main


def _error(capsys: Any, argv: list[str]) -> str:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("depthlens:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("depthlens: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["lens", "trian"], "unknown 'lens' subcommand 'trian'; did you mean 'train'?"),
        (["study", "dept", "-o", "x"], "unknown 'study' subcommand 'dept'; did you mean 'depth'?"),
        (["--debug", "prfile"], "unknown command 'prfile'; did you mean 'profile'?"),
    ],
)
def test_did_you_mean_at_every_level(capsys: Any, argv: list[str], hint: str) -> None:
    assert hint in _error(capsys, argv)


@pytest.mark.parametrize("lone", ["folder", "smollm2-135m", "m.gguf"])
def test_think_with_the_prompt_forgotten(capsys: Any, tmp_path: Path, lone: str) -> None:
    ref = str(tmp_path / "pruned4") if lone == "folder" else lone
    if lone == "folder":
        Path(ref).mkdir()
    line = _error(capsys, ["think", ref])
    assert "is a model, not a prompt" in line and f'depthlens think {ref} "' in line
