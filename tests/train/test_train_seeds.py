"""Mean ± 95% interval over seeds and the rule that calls a difference."""

from __future__ import annotations

import math

import pytest

from depthlens.errors import DepthlensError
from depthlens.train.seeds import Interval, differences, interval, summarise, t975
from depthlens.train.study import PAPER_PRESET, StudyConfig, seeds_arg


def test_interval_is_the_student_t_interval() -> None:
    xs = [5.0, 5.2, 4.9]
    iv = interval(xs)
    assert iv is not None
    mean = sum(xs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
    assert iv.mean == pytest.approx(mean)
    assert iv.hi - iv.mean == pytest.approx(4.303 * sd / math.sqrt(3))  # t_{0.975, 2}
    assert interval([None, 2.0]) == Interval(2.0, 2.0, 2.0, 1)
    assert interval([None]) is None
    assert t975(1) == 12.706 and t975(100) == 1.96


def test_single_seed_never_separates() -> None:
    assert not Interval(1.0, 1.0, 1.0, 1).separates(Interval(2.0, 2.0, 2.0, 1))
    assert Interval(1.0, 0.9, 1.1, 3).separates(Interval(2.0, 1.9, 2.1, 3))
    assert not Interval(1.0, 0.5, 1.5, 3).separates(Interval(1.4, 1.3, 1.5, 3))


def _row(scheme: str, depth: int, seed: int, loss: float) -> dict[str, object]:
    return {
        "scheme": scheme,
        "depth": depth,
        "seed": seed,
        "eval_loss": loss,
        "unused_depth": 0.5,
        "removal_cost_rel": [0.3, 0.01],
        "resid_rms": [0.1, 1.0, 2.0],
    }


def test_differences_called_only_when_intervals_separate() -> None:
    rows = [_row("pre-ln", 4, s, 5.0 + 0.01 * s) for s in range(3)]
    rows += [_row("lns", 4, s, 4.8 + 0.01 * s) for s in range(3)]  # clearly lower
    rows += [_row("pre-ln", 8, s, 5.0 + 0.2 * s) for s in range(3)]
    rows += [_row("lns", 8, s, 5.1 - 0.2 * s) for s in range(3)]  # overlapping
    summ = summarise(rows)
    e = next(x for x in summ if (x["scheme"], x["depth"]) == ("pre-ln", 4))
    assert e["n_seeds"] == 3 and e["rms_growth"]["mean"] == pytest.approx(2.0)
    assert e["removal_first_half"]["mean"] == pytest.approx(0.3)
    d = {(r["depth"], r["figure"]): r for r in differences(summ, "pre-ln", "lns")}
    assert d[(4, "eval_loss")]["significant"]
    assert not d[(8, "eval_loss")]["significant"]
    assert not d[(4, "unused_depth")]["significant"]  # equal: zero-width intervals touch


def test_seeds_argument_and_grid() -> None:
    assert seeds_arg("3") == (0, 1, 2) and seeds_arg("0,5") == (0, 5)
    with pytest.raises(DepthlensError, match="--seeds"):
        seeds_arg("x")
    with pytest.raises(DepthlensError, match="at least 1"):
        seeds_arg("0")
    cfg = StudyConfig(depths=(2,), schemes=("pre-ln",), seeds=(0, 1))
    assert [(c.depth, c.seed) for c in cfg.runs()] == [(2, 0), (2, 1)]
    with pytest.raises(DepthlensError, match="distinct"):
        StudyConfig(seeds=(1, 1)).validate()
    assert len(StudyConfig().seeds) >= 3
    PAPER_PRESET.validate()
    assert PAPER_PRESET.depths == (12, 24) and PAPER_PRESET.base.width == 256
    assert PAPER_PRESET.base.steps * PAPER_PRESET.base.tokens_per_step >= 50_000_000
