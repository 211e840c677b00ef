"""Healing options: the budget in steps, the warm-up + cosine schedule, refusals."""

from __future__ import annotations

import math

import pytest

from depthlens.errors import DepthlensError
from depthlens.heal import HealOptions


def test_budget_in_tokens_sets_the_steps_and_the_curve_cadence():
    o = HealOptions(tokens=10_000, seq_len=100, batch_size=4)
    assert o.total_steps == 25 and o.eval_interval == 2 and o.checkpoint_interval == 2
    assert HealOptions(steps=7).total_steps == 7


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_min_lr():
    o = HealOptions(steps=100, lr=1.0, warmup=0.1, min_lr=0.1)
    assert [o.lr_at(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert o.lr_at(9) == pytest.approx(1.0)  # the last warm-up step reaches the peak
    assert o.lr_at(10) == pytest.approx(1.0)  # the cosine starts at the peak
    mid = 10 + 45
    assert o.lr_at(mid) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert o.lr_at(99) == pytest.approx(0.1, abs=1e-3)
    lrs = [o.lr_at(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"train": "lroa"}, "lora"),  # did-you-mean
        ({"steps": 0}, "--steps must be at least 1"),
        ({"tokens": 10, "seq_len": 256}, "less than one window"),
        ({"lr": 0}, "--lr 0"),
        ({"warmup": 1.0}, "--warmup 1.0"),
        ({"patience": -1}, "--patience -1"),
    ],
)
def test_bad_options_are_refused_in_one_line(kw, msg):
    with pytest.raises(DepthlensError, match=msg) as e:
        HealOptions(**kw).validate()
    assert "\n" not in str(e.value)
