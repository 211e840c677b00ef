"""What trains: LoRA next to each cut, LoRA on every block, or the merged maps only."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows
from heal_helpers import cut_pair, state_dict_copy

from depthlens.errors import DepthlensError
from depthlens.heal import CutSites, HealOptions, heal_, heal_refusal


def test_neighbours_and_cut_points_in_cut_model_indices():
    sites = CutSites(removed=(3, 4, 7), kept=(0, 1, 2, 5, 6, 8, 9), merge_blocks=(2, 6))
    assert sites.neighbours(1) == [2, 3, 4, 5]  # 2|5 around 3-4, 6|8 around 7
    assert sites.neighbours(2) == [1, 2, 3, 4, 5, 6]
    # kept: 0 1 2 5 6 8 9 -> block 2 is kept index 2, its run ends at h_5; 6 -> 4, h_8
    assert sites.cut_points() == [(2, 5), (4, 8)]
    assert CutSites(removed=(0,), kept=(1, 2, 3), merge_blocks=()).neighbours(1) == [0]
    assert CutSites(removed=(3,), kept=(0, 1, 2), merge_blocks=()).neighbours(1) == [2]
    sub = CutSites(removed=(), kept=(0, 1, 2, 3), merge_blocks=(), touched=(2,))
    assert sub.neighbours(1) == [2] and sub.neighbours(2) == [1, 2, 3]


def _changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def _heal(train: str):
    teacher, student, sites, _ = cut_pair("llama")  # block 1 of 4 removed, map into block 0
    before = state_dict_copy(student.model)
    w = random_windows(n=8, seq_len=16)
    opts = HealOptions(steps=3, seq_len=16, batch_size=2, lr=1e-2, warmup=0.0, train=train)
    res = heal_(student, teacher, w, opts, sites)
    assert not any("lora" in k for k in student.model.state_dict())
    return _changed(before, state_dict_copy(student.model)), res


def test_lora_changes_only_the_linears_of_the_blocks_next_to_the_cut():
    changed, res = _heal("lora")
    blocks = {k.split(".")[2] for k in changed}
    assert blocks == {"0", "1"}  # kept blocks 0 and 2 (cut indices 0, 1) around block 1
    assert all(k.endswith("_proj.weight") for k in changed)
    assert len(changed) == 2 * 7 and res.trainable_params > 0


def test_blocks_changes_every_blocks_linears_and_nothing_else():
    changed, _ = _heal("blocks")
    assert {k.split(".")[2] for k in changed} == {"0", "1", "2"}
    assert all(k.endswith("_proj.weight") for k in changed) and len(changed) == 3 * 7


def test_maps_changes_only_the_merged_projection():
    changed, res = _heal("maps")
    assert changed == {"model.layers.0.mlp.down_proj.weight"}
    assert res.trained_modules == ["model.layers.0.mlp.down_proj"]


def test_maps_refused_for_a_cut_without_maps():
    teacher, student, sites, _ = cut_pair("gemma2")  # sandwich norms: no map can merge
    with pytest.raises(DepthlensError, match="MLP output projection"):
        heal_(student, teacher, random_windows(4, 16), HealOptions(steps=1, train="maps"), sites)
    assert heal_refusal(student.arch, "lora") is None


@pytest.mark.parametrize("train", ["lora", "blocks"])
def test_a_sublayer_cut_stays_exact_after_healing(train):
    """The removed sublayers' projections get no LoRA and are zero after healing."""
    import copy

    from conftest import wrap_tiny

    from depthlens.arch.spec import blocks_of
    from depthlens.cut import CutPlan, apply_cut_
    from depthlens.cut.plan import plan_envelope
    from depthlens.cut.units import units_savings

    teacher = wrap_tiny("llama")
    lm, w = copy.deepcopy(teacher), random_windows(n=4, seq_len=16)
    subs = (("attn", 1), ("mlp", 2))
    plan = CutPlan(
        envelope=plan_envelope(lm, w, {}),
        method="units-ls",
        num_layers=lm.num_layers,
        removed=(),
        merge_into=None,
        selection={},
        fit={},
        savings=units_savings(lm, subs, w.seq_len),
        sublayers=subs,
    )
    apply_cut_(lm, plan)
    sites = CutSites.of_plan(plan)
    assert sites.sublayers == subs and sites.touched == (1, 2)
    res = heal_(lm, teacher, w, HealOptions(steps=2, seq_len=16, batch_size=2, train=train), sites)
    blocks = blocks_of(lm.model, lm.arch)
    assert not any("1.self_attn" in m or "2.mlp" in m for m in res.trained_modules)
    assert any("1.mlp" in m for m in res.trained_modules)  # the kept sublayer heals
    assert not blocks[1].self_attn.o_proj.weight.any()
    assert not blocks[2].mlp.down_proj.weight.any()
