"""Healing over every family fixture: admitted ones heal and merge back, the rest are refused."""

from __future__ import annotations

import pytest
from conftest import random_windows
from heal_helpers import REFUSED, cut_pair, teacher_of
from tiny_models import TINY_FAMILIES

from depthlens.errors import UnsupportedArchitectureError
from depthlens.heal import HealOptions, heal_, heal_refusal

ADMITTED = [f for f in TINY_FAMILIES if f not in REFUSED]


@pytest.mark.parametrize("family", ADMITTED)
def test_admitted_family_heals_and_merges_back(family):
    teacher, student, sites, _ = cut_pair(family)
    cls = type(student.model)
    opts = HealOptions(steps=2, seq_len=16, batch_size=2, eval_every=1)
    held = random_windows(n=2, seq_len=16, seed=5)
    res = heal_(student, teacher, random_windows(n=4, seq_len=16), opts, sites, evals=held)
    assert type(student.model) is cls and res.trainable_params > 0
    assert not any("lora" in k for k in student.model.state_dict())
    assert len(res.curve) == 3 and all(p["ppl"] > 1 for p in res.curve)
    assert res.trained_modules  # the linears next to the cut, named from the ArchSpec


@pytest.mark.parametrize("family", REFUSED)
def test_encoder_family_is_refused_with_the_reason(family):
    lm = teacher_of(family)
    why = heal_refusal(lm.arch, "lora")
    assert why is not None and "causal LM" in why
    with pytest.raises(UnsupportedArchitectureError, match="next-token distributions"):
        heal_(lm, lm, random_windows(n=2, seq_len=8), HealOptions(steps=1, seq_len=8), None)  # type: ignore[arg-type]
