"""Cuts at sublayer granularity (units-ls) on tiny random models: exactness, budgets, I/O."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import random_windows, wrap_tiny
from test_cut_core import RELOAD_CHECK

from depthlens.arch.removed import is_removed
from depthlens.arch.spec import blocks_of
from depthlens.causal.replay import zero_sublayer
from depthlens.cut import (
    CutOptions,
    CutPlan,
    apply_cut_,
    load_plan,
    plan_cut,
    save_plan,
    save_pruned,
)
from depthlens.cut.apply import rezero_removed_sublayers_, skip_removed_sublayers_
from depthlens.cut.plan import plan_envelope
from depthlens.cut.search import SearchOptions
from depthlens.cut.unit_time import measure_unit_time
from depthlens.cut.units import Budget, unit_shares, units_savings
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token, sublayer_costs
from depthlens.models import load_model

FAMILIES = ["llama", "qwen2", "gemma3", "gpt2"]
SUBS = (("attn", 1), ("mlp", 2), ("attn", 3))


def _plan(lm, w, removed=(), subs=SUBS) -> CutPlan:
    """A hand-made unit plan: blocks ``removed`` (no maps) and sublayers ``subs``."""
    return CutPlan(
        envelope=plan_envelope(lm, w, {}),
        method="units-ls",
        num_layers=lm.num_layers,
        removed=tuple(removed),
        merge_into=None,
        selection={},
        fit={},
        savings=units_savings(lm, (*(("block", i) for i in removed), *subs), w.seq_len),
        sublayers=tuple(subs),
    )


def _reference(lm, subs, ids):
    """The intact model with each sublayer's module output zeroed by a hook (causal.replay)."""
    blocks = blocks_of(lm.model, lm.arch)
    with contextlib.ExitStack() as stack, torch.no_grad():
        for part, i in subs:
            stack.enter_context(zero_sublayer(blocks[i], lm.arch, part))
        return lm.model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_sublayers_equal_zero_output_in_both_forms(family, tmp_path):
    lm = wrap_tiny(family)
    w = random_windows(n=4, seq_len=16)
    ids = w.input_ids[:2]
    ref = _reference(lm, SUBS, ids)
    f0 = flops_per_token(lm, 16)["total"]
    plan = _plan(lm, w)
    apply_cut_(lm, plan)
    with torch.no_grad():
        zeroed = lm.model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(zeroed, ref, atol=1e-5, rtol=1e-5)
    assert flops_per_token(lm, 16)["total"] == f0  # zeroed weights are still computed
    save_pruned(lm, plan, tmp_path / "cut")
    assert skip_removed_sublayers_(lm) == ["attn:1", "mlp:2", "attn:3"]
    assert sum(is_removed(m) for m in lm.model.modules()) == 3
    with torch.no_grad():
        skipped = lm.model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(skipped, ref, atol=1e-5, rtol=1e-5)
    # the skipped form saves exactly the sublayers' predicted FLOPs
    saved = f0 - flops_per_token(lm, 16)["total"]
    assert saved == plan.savings["flops_removed_per_token"]
    # a removed attention keeps the KV cache's length: cached generation = uncached
    out = lm.model.generate(ids[:1, :6], max_new_tokens=8, do_sample=False, use_cache=True)
    full = lm.model.generate(ids[:1, :6], max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(out, full)
    with pytest.raises(DepthlensError, match="skipped sublayers"):
        save_pruned(lm, plan, tmp_path / "again")


def _cut_and_save(family: str, tmp_path: Path) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Block 2, attn 1 and mlp 3 of a tiny ``family`` model cut and saved: (dir, ids, logits)."""
    lm = wrap_tiny(family)
    w = random_windows(n=4, seq_len=16)
    plan = _plan(lm, w, removed=(2,), subs=(("attn", 1), ("mlp", 3)))
    apply_cut_(lm, plan)
    ids = w.input_ids[:2]
    with torch.no_grad():
        got = lm.model(input_ids=ids, use_cache=False).logits
    out = save_pruned(lm, plan, tmp_path / "cut")
    return out, ids, got


def test_save_reload_plain_transformers_and_depthlens_loader(tmp_path):
    out, ids, got = _cut_and_save("qwen2", tmp_path)
    check: dict = {}
    exec(RELOAD_CHECK, check)  # plain AutoModelForCausalLM: same logits, cache = no cache
    check["reload_and_check"](str(out), ids, got)
    fast = load_model(str(out), skip_sublayers=True)
    assert fast.extra["sublayers_skipped"] == ["attn:1", "mlp:2"]  # indices after the cut
    with torch.no_grad():
        again = fast.model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(again, got, atol=1e-5, rtol=1e-5)
    plain = load_model(str(out))
    assert not any(is_removed(m) for m in plain.model.modules())


@pytest.mark.e2e  # a fresh process: nothing of depthlens is imported
def test_sublayer_cut_reloads_in_a_fresh_process(tmp_path):
    out, ids, got = _cut_and_save("llama", tmp_path)
    torch.save({"ids": ids, "ref": got}, tmp_path / "t.pt")
    code = RELOAD_CHECK + textwrap.dedent(f"""
        import sys
        t = torch.load({str(tmp_path / "t.pt")!r})
        reload_and_check({str(out)!r}, t["ids"], t["ref"])
        assert "depthlens" not in sys.modules
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


def test_budget_search_frees_the_budget_and_accounts_flops():
    lm = wrap_tiny("llama")
    w = random_windows(n=20, seq_len=16)
    budget = Budget("flops", 0.3, context=16)
    opts = CutOptions(budget=budget, search=SearchOptions(rescore=3))
    plan = plan_cut(lm, w, "units-ls", opts)
    fl = flops_per_token(lm, 16)
    costs = sublayer_costs(lm, 16)
    # a block's FLOPs are its two sublayers' (norms have no matmul)
    assert all(c["attn"]["flops"] + c["mlp"]["flops"] == b for c, b in zip(costs, fl["blocks"]))
    removed = sum(fl["blocks"][i] for i in plan.removed) + sum(
        costs[i][k]["flops"] for k, i in plan.sublayers
    )
    assert plan.savings["flops_removed_per_token"] == removed
    assert removed / fl["total"] >= 0.3 and plan.savings["flops_fraction"] >= 0.3
    assert plan.selection["freed_share"] == pytest.approx(plan.savings["flops_fraction"])
    assert [t["unit"] for t in plan.selection["trace"]]  # one unit per step
    shares = unit_shares(lm, Budget("params", 0.2))
    total = sum(p.numel() for p in lm.model.parameters())
    assert shares[("mlp", 1)] == pytest.approx(costs[1]["mlp"]["params"] / total)
    # the plan applies: the cut model computes what the search scored
    apply_cut_(lm, plan)
    skip_removed_sublayers_(lm)
    cut = flops_per_token(lm, 16)["total"]
    assert 1 - cut / fl["total"] == pytest.approx(plan.savings["flops_fraction"])


def test_plan_round_trip_keeps_units(tmp_path):
    lm = wrap_tiny("llama")
    w = random_windows(n=20, seq_len=16)
    opts = CutOptions(budget=Budget("params", 0.25, context=16), search=SearchOptions(rescore=2))
    plan = plan_cut(lm, w, "units-ls", opts)
    save_plan(plan, tmp_path / "plan.json")
    back = load_plan(tmp_path / "plan.json")
    assert (back.removed, back.sublayers) == (plan.removed, plan.sublayers)
    assert back.selection["units"] == plan.selection["units"]
    assert len(back.maps()) == len(plan.maps())
    again = CutPlan.from_dict(plan.to_dict())
    assert again.sublayers == plan.sublayers
    assert "units-ls" in plan.preview()


def test_speedup_budget_uses_measured_shares():
    lm = wrap_tiny("llama")
    t = measure_unit_time(lm, context=16, mode="decode", rounds=2)
    assert t.mode == "decode" and set(t.share) == {"attn", "mlp"}
    assert all(0 <= v <= 1 for v in t.share.values())
    forced = dataclasses.replace(t, share={"attn": 0.05, "mlp": 0.15})
    w = random_windows(n=20, seq_len=16)
    opts = CutOptions(budget=Budget("speedup", 1.25, context=16, mode="decode"), timing=forced)
    plan = plan_cut(lm, w, "units-ls", opts)
    assert plan.selection["freed_share"] >= 0.2  # 1 - 1/1.25
    assert plan.selection["timing"]["share"] == {"attn": 0.05, "mlp": 0.15}


@pytest.mark.parametrize(
    "budget, match",
    [
        (Budget("flops", 1.5), "budget-flops"),
        (Budget("speedup", 0.9), "budget-speedup"),
        (Budget("time", 0.5), "budget kind"),
    ],
)
def test_bad_budgets_refused(budget, match):
    lm = wrap_tiny("llama")
    with pytest.raises(DepthlensError, match=match):
        plan_cut(lm, random_windows(n=20, seq_len=16), "units-ls", CutOptions(budget=budget))


def test_units_ls_needs_a_budget_and_post_norm_is_refused():
    w = random_windows(n=20, seq_len=16)
    with pytest.raises(DepthlensError, match="needs a budget"):
        plan_cut(wrap_tiny("llama"), w, "units-ls", CutOptions(n=1))
    with pytest.raises(DepthlensError, match="post-norm"):
        plan_cut(wrap_tiny("lab_post_ln"), w, "units-ls", CutOptions(budget=Budget("flops", 0.2)))


def test_rezero_after_training_restores_the_removed_sublayers():
    lm = wrap_tiny("llama")
    w = random_windows(n=4, seq_len=16)
    apply_cut_(lm, _plan(lm, w, subs=(("attn", 1),)))
    proj = blocks_of(lm.model, lm.arch)[1].self_attn.o_proj
    with torch.no_grad():
        proj.weight.add_(0.1)  # what a heal's LoRA merge may do to a removed projection
    rezero_removed_sublayers_(lm)
    assert not proj.weight.any()
