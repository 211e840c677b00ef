"""The typed records: a saved cut's manifest reads back equal; bfloat16 heals and stays bf16."""

from __future__ import annotations

import torch
from conftest import random_windows
from heal_helpers import cut_pair

from depthlens.cut.save import cut_manifest
from depthlens.heal import CutSites, HealOptions, heal_
from depthlens.models.manifest import CutManifest, load_manifest


def test_cut_manifest_round_trips_and_names_its_sites(tmp_path):
    from depthlens.cut import save_pruned

    _teacher, student, _sites, plan = cut_pair("llama")
    man = cut_manifest(student, plan)
    assert CutManifest.from_dict(man.to_dict()) == man
    save_pruned(student, plan, tmp_path / "cut")
    back = load_manifest(tmp_path / "cut")
    assert back is not None and back.removed == [1] and back.base_model == plan.model
    assert back.kept == [0, 2, 3] and back.merge_blocks == [0]
    assert CutSites.of(back) == CutSites.of_plan(plan)
    assert load_manifest(tmp_path) is None  # never cut


def test_bfloat16_heals_with_float32_adapters_and_saves_bfloat16():
    teacher, student, sites, _ = cut_pair("llama")
    for lm in (teacher, student):
        lm.model.to(torch.bfloat16)
    opts = HealOptions(steps=2, seq_len=16, batch_size=2, eval_every=1)
    held = random_windows(n=2, seq_len=16, seed=5)
    res = heal_(student, teacher, random_windows(n=4, seq_len=16), opts, sites, evals=held)
    assert all(p.dtype == torch.bfloat16 for p in student.model.parameters())
    assert len(res.curve) == 3 and res.log[-1]["kl"] >= 0
