"""Healing over every family fixture: admitted ones heal and merge back, the rest are refused."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import random_windows
from heal_helpers import REFUSED, cut_pair, teacher_of
from tiny_models import TINY_FAMILIES
from torch import nn
from transformers.pytorch_utils import Conv1D

from depthlens.arch.spec import blocks_of
from depthlens.errors import UnsupportedArchitectureError
from depthlens.heal import HealOptions, heal_, heal_refusal
from depthlens.models.loading import LoadedModel

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


def test_the_fixtures_cover_both_sides() -> None:
    healable = {f for f in TINY_FAMILIES if heal_refusal(teacher_of(f).arch) is None}
    assert {"llama", "gpt2", "gpt_neox", "phi", "starcoder2", "gemma3"} <= healable
    assert healable == set(ADMITTED)  # the spec's refusal and the fixture list agree


def _lora_params(lm: LoadedModel, rank: int) -> int:
    """LoRA's parameter count on every linear of every block: r·(in + out) each."""
    total = 0
    for block in blocks_of(lm.model, lm.arch):
        for name in lm.arch.lora_targets:
            m = block.get_submodule(name)
            assert isinstance(m, nn.Linear | Conv1D), name
            fan_in, fan_out = m.weight.shape[::-1] if isinstance(m, nn.Linear) else m.weight.shape
            total += rank * (fan_in + fan_out)
    return total


@pytest.mark.parametrize("family", ["llama", "gpt2", "starcoder2"])
def test_blocks_lora_adapts_every_linear_the_spec_names(family: str) -> None:
    """An attention-only LoRA would count short here (GPT-2: Conv1D, fan_in_fan_out)."""
    teacher, student, sites, _ = cut_pair(family)
    want = _lora_params(student, 2)
    opts = HealOptions(steps=2, seq_len=16, batch_size=2, train="blocks", lora_rank=2)
    res = heal_(student, teacher, random_windows(n=4, seq_len=16), opts, sites)
    assert res.trainable_params == want, "LoRA must adapt every linear the spec names"


def test_a_layout_naming_one_sublayers_linears_only_is_refused() -> None:
    lm = teacher_of("starcoder2")
    half = dataclasses.replace(lm.arch, mlp_linears=())  # the old attention-only LoRA
    assert "only part of each block" in str(heal_refusal(half))
    assert heal_refusal(half, "maps") is None  # the merged projections need no LoRA names
