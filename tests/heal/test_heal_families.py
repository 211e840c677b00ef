"""Healing over every family fixture: LoRA on every linear the spec names, or a refusal.

A student is the family's tiny model with its block weights perturbed; healing it towards
the unperturbed teacher must lower the KL, adapt every linear layer of every block (the
count of trainable parameters is that of LoRA on all of them: an attention-only LoRA
would be short), and merge back into an ordinary model of the same class. A family that
cannot be healed is refused with the reason before any step.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import random_windows, wrap_tiny
from tiny_models import TINY_FAMILIES
from torch import nn
from transformers.pytorch_utils import Conv1D

from depthlens.arch.spec import blocks_of
from depthlens.errors import UnsupportedArchitectureError
from depthlens.heal import HealOptions, heal_
from depthlens.heal.distill import heal_refusal
from depthlens.models.loading import LoadedModel

RANK = 2
HEALABLE = sorted(n for n in TINY_FAMILIES if heal_refusal(wrap_tiny(n).arch) is None)
REFUSED = sorted(set(TINY_FAMILIES) - set(HEALABLE))


def test_the_fixtures_cover_both_sides() -> None:
    assert {"llama", "gpt2", "gpt_neox", "phi", "starcoder2", "gemma3"} <= set(HEALABLE)
    assert {"bert", "roberta"} <= set(REFUSED)


def _kl(student: LoadedModel, teacher: LoadedModel, ids: torch.Tensor) -> float:
    with torch.no_grad():
        p = torch.log_softmax(teacher.model(input_ids=ids).logits, -1)
        q = torch.log_softmax(student.model(input_ids=ids).logits, -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def _lora_params(lm: LoadedModel) -> int:
    """LoRA's parameter count on every linear of every block: r·(in + out) each."""
    total = 0
    for block in blocks_of(lm.model, lm.arch):
        for name in lm.arch.lora_targets:
            m = block.get_submodule(name)
            assert isinstance(m, nn.Linear | Conv1D), name
            fan_in, fan_out = m.weight.shape[::-1] if isinstance(m, nn.Linear) else m.weight.shape
            total += RANK * (fan_in + fan_out)
    return total


@pytest.mark.parametrize("name", HEALABLE)
def test_lora_heal_adapts_every_linear_and_merges_back(name: str) -> None:
    teacher = wrap_tiny(name)
    student = copy.deepcopy(teacher)
    torch.manual_seed(1)
    with torch.no_grad():
        for block in blocks_of(student.model, student.arch):
            for p in block.parameters():
                p.add_(0.05 * torch.randn_like(p))
    w = random_windows(n=8, seq_len=12)
    cls, want = type(student.model), _lora_params(student)
    before = _kl(student, teacher, w.input_ids)
    opts = HealOptions(steps=8, lr=1e-2, lora_rank=RANK, lora_alpha=2 * RANK, batch_size=4)
    rec = heal_(student, teacher, w, opts)
    assert rec["trainable_params"] == want, "LoRA must adapt every linear the spec names"
    assert _kl(student, teacher, w.input_ids) < before
    assert type(student.model) is cls
    assert not any("lora" in k for k in student.model.state_dict())


@pytest.mark.parametrize("name", REFUSED)
def test_a_family_that_cannot_be_healed_is_refused_with_the_reason(name: str) -> None:
    lm = wrap_tiny(name)
    why = heal_refusal(lm.arch)
    assert why is not None and lm.arch.family in why
    w = random_windows(n=2, seq_len=8)
    with pytest.raises(UnsupportedArchitectureError, match="cannot heal") as err:
        heal_(lm, copy.deepcopy(lm), w, HealOptions(steps=1))
    assert why in str(err.value)


def test_a_layout_naming_one_sublayers_linears_only_is_refused() -> None:
    lm = wrap_tiny("starcoder2")
    half = dataclasses.replace(lm.arch, mlp_linears=())  # the old attention-only LoRA
    assert "only part of each block" in str(heal_refusal(half))
    assert heal_refusal(half, "merged") is None  # the merged projections need no LoRA names
