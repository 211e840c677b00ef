"""What a cut method accepts is in its record, not in an ``if name == …`` of the CLI."""

from __future__ import annotations

import pytest

from depthlens.cli.main import main
from depthlens.cut import CUT_METHODS


def test_only_the_records_that_take_blocks_accept_blocks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    takers = [m.name for m in CUT_METHODS.values() if m.takes_blocks]
    assert takers == ["replaceme-multi"]
    # refused before the model is loaded (a name that does not exist would fail later)
    assert main(["prune", "no-such-model", "--method", "last", "--blocks", "3", "-o", "x"]) == 2
    err = capsys.readouterr().err
    assert "use it with --method replaceme-multi, not last" in err and err.count("\n") == 1


def test_only_the_records_that_take_a_budget_accept_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert [m.name for m in CUT_METHODS.values() if m.takes_budget] == ["units-ls"]
    argv = ["prune", "no-such-model", "--method", "last", "--budget-flops", "0.8", "-o", "x"]
    assert main(argv) == 2
    assert "go with --method units-ls, not last" in capsys.readouterr().err
    assert main(["prune", "no-such-model", "--method", "units-ls", "-o", "x"]) == 2
    assert "--method units-ls needs --budget-flops F" in capsys.readouterr().err
