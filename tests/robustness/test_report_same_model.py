"""A report draws only results of the profiled model, and never writes over its inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, run_cli
from conftest import random_windows, wrap_tiny

from depthlens.cut import CutOptions, plan_cut
from depthlens.evaluate.compare import compare
from depthlens.profiling import ProfileOptions, profile


@pytest.fixture(scope="module")
def prof_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("rep") / "p.json"
    opts = ProfileOptions(batch_size=2, lens_kernel="eager", n_max=2)
    profile(wrap_tiny("llama"), random_windows(n=2), opts, progress=False).save(p)
    return p


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, default=str))
    return path


def _report(capsys: Any, *argv: str) -> tuple[int, str]:
    return run_cli(capsys, "report", *argv, "--quiet")


def test_plan_of_a_deeper_model(capsys: Any, tmp_path: Path, prof_path: Path) -> None:
    bad = {
        "kind": "depthlens.cut_plan",
        "method": "angular",
        "num_layers": 44,
        "removed": [40, 41, 42, 43],
    }
    plan = _write(tmp_path / "plan.json", bad)
    rc, err = _report(capsys, str(prof_path), str(plan), "-o", str(tmp_path / "r.html"))
    assert_one_error(rc, err, "describe different models (num_layers 4 vs 44)")
    assert not (tmp_path / "r.html").exists()


def test_blocks_out_of_range_without_a_depth(capsys: Any, tmp_path: Path, prof_path: Path) -> None:
    plan = _write(
        tmp_path / "plan.json",
        {"kind": "depthlens.cut_plan", "method": "angular", "removed": [2, 3, 4, 5]},
    )
    rc, err = _report(capsys, str(prof_path), str(plan), "-o", str(tmp_path / "r.html"))
    assert_one_error(rc, err, "removes blocks [4, 5] but the profiled model has 4 blocks")


def test_plan_of_another_model_same_depth(capsys: Any, tmp_path: Path, prof_path: Path) -> None:
    """Same layer count, another network: the identity decides, not the depth."""
    other = wrap_tiny("qwen2")  # 4 blocks too
    assert other.num_layers == 4
    plan = plan_cut(other, random_windows(n=2), "last", CutOptions(n=1))
    d = plan.to_dict()
    d.setdefault("model", other.identity())
    path = _write(tmp_path / "plan.json", d)
    rc, err = _report(capsys, str(prof_path), str(path), "-o", str(tmp_path / "r.html"))
    assert_one_error(rc, err, "describe different models")


def test_compare_of_another_model_refused_own_accepted(
    capsys: Any, tmp_path: Path, prof_path: Path
) -> None:
    w = random_windows(n=2, seq_len=8)
    other = wrap_tiny("gemma3")
    bad = compare([("g", other), ("g2", wrap_tiny("gemma3"))], w, speed=False)
    path = _write(tmp_path / "c.json", bad.to_dict())
    rc, err = _report(capsys, str(prof_path), str(path), "-o", str(tmp_path / "r.html"))
    assert_one_error(rc, err, "describe different models")
    good = compare([("o", wrap_tiny("llama")), ("o2", wrap_tiny("llama"))], w, speed=False)
    from depthlens.profiling.result import Profile
    from depthlens.report.inputs import gather_inputs

    inp = gather_inputs(Profile.load(prof_path), [json.loads(json.dumps(good.to_dict()))])
    assert len(inp.cuts) == 2  # the profiled model's own comparison is accepted


@pytest.mark.parametrize("overwrite", [False, True])
def test_report_over_its_own_input(
    capsys: Any, tmp_path: Path, prof_path: Path, overwrite: bool
) -> None:
    before = prof_path.read_bytes()
    extra = ["--overwrite"] if overwrite else []
    rc, err = _report(capsys, str(prof_path), "-o", str(prof_path), *extra)
    assert_one_error(rc, err, "is one of the inputs")
    assert prof_path.read_bytes() == before


def test_apply_a_plan_of_another_model_same_depth() -> None:
    from depthlens.cut import apply_cut_
    from depthlens.errors import DepthlensError

    other = wrap_tiny("qwen2")  # 4 blocks, like the llama
    plan = plan_cut(other, random_windows(n=2), "last", CutOptions(n=1))
    lm = wrap_tiny("llama")
    with pytest.raises(DepthlensError, match="the plan and this model describe different models"):
        apply_cut_(lm, plan)
    assert lm.num_layers == 4  # untouched
    apply_cut_(lm, plan_cut(wrap_tiny("llama"), random_windows(n=2), "last", CutOptions(n=1)))
    assert lm.num_layers == 3  # a plan of the same network (another instance) applies


def test_compare_refuses_models_with_another_tokenizer() -> None:
    from fixtures_saved import tiny_tokenizer

    from depthlens.errors import DepthlensError

    class OtherVocab:
        def get_vocab(self) -> dict[str, int]:
            return {f"t{i}": i for i in range(128)}  # same size, other tokens

    a, b, c = wrap_tiny("llama"), wrap_tiny("llama"), wrap_tiny("llama")
    a.tokenizer, b.tokenizer, c.tokenizer = tiny_tokenizer(), tiny_tokenizer(), OtherVocab()
    w = random_windows(n=2, seq_len=8)
    with pytest.raises(DepthlensError, match="has another tokenizer than"):
        compare([("a", a), ("c", c)], w, speed=False)
    assert len(compare([("a", a), ("b", b)], w, speed=False).models) == 2
