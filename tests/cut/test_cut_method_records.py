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


def test_a_family_without_an_mlp_output_projection_by_the_record() -> None:
    from conftest import wrap_tiny

    from depthlens.cut.planner import check_method
    from depthlens.errors import DepthlensError

    lm = wrap_tiny("bert")  # BERT: the MLP output is normalised after the add
    assert lm.arch.mlp_out_proj is None
    assert [m.name for m in CUT_METHODS.values() if m.maps_optional] == ["units-ls"]
    check_method("units-ls", lm)  # cuts without maps
    check_method("last", lm)  # no replacement: nothing to merge
    with pytest.raises(DepthlensError):
        check_method("replaceme-ls", lm)
