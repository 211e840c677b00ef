"""``depthlens plan/prune --method units-ls``: budget flags, errors, the saved checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_saved import write_text

from depthlens.cli.main import main


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text(tmp_path_factory.mktemp("units-text") / "t.txt", 800)


def _argv(cmd: str, model: Path, text: Path, *extra: str) -> list[str]:
    data = ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]
    return [cmd, str(model), *data, "--method", "units-ls", *extra]


def test_prune_with_a_flop_budget_writes_units(model_dir, text, tmp_path, capsys: Any):
    out = tmp_path / "cut"
    rc = main(_argv("prune", model_dir, text, "--budget-flops", "0.3", "-o", str(out)))
    printed = capsys.readouterr().out
    assert rc == 0, printed
    man = json.loads((out / "depthlens.json").read_text())
    plan = man["plan"]
    assert plan["savings"]["flops_fraction"] >= 0.3
    assert plan["options"]["budget"]["kind"] == "flops"
    assert len(man["sublayers"]) == len(plan["sublayers"])
    assert "units-ls" in printed and "search trace" in printed


def test_given_units_plan(model_dir, text, tmp_path, capsys: Any):
    rc = main(
        _argv("plan", model_dir, text, "--units", "attn:1,mlp:3", "-o", str(tmp_path / "p.json"))
    )
    assert rc == 0
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["sublayers"] == ["attn:1", "mlp:3"] and saved["removed"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--method units-ls needs --budget-flops"),
        (["--budget-flops", "1.2"], "--budget-flops must be in (0, 1)"),
        (["--budget-speedup", "0.8"], "--budget-speedup must be > 1"),
        (["--units", "ffn:3"], "a cut unit is block:I, attn:I or mlp:I"),
    ],
)
def test_budget_errors_are_one_line(model_dir, text, capsys: Any, extra, message):
    rc = main(_argv("plan", model_dir, text, *extra))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_budget_with_another_method_is_refused(model_dir, text, capsys: Any):
    argv = _argv("plan", model_dir, text, "--budget-flops", "0.2")
    argv[argv.index("units-ls")] = "greedy-ls"
    assert main(argv) == 2
    assert "go with --method units-ls" in capsys.readouterr().err
