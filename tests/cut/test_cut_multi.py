"""replaceme-multi on tiny models: one LS map per run, joint and sequential targets."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_windows, wrap_tiny
from tiny_models import _LLAMA_KW, _finish
from transformers import LlamaConfig, LlamaForCausalLM

from depthlens.arch.spec import resolve_arch
from depthlens.capture.hooks import first_tensor, hooks
from depthlens.cli.main import main
from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut
from depthlens.cut.multi import check_removed, fit_runs, mlp_transform_hooks, runs_of
from depthlens.cut.select import skip_blocks
from depthlens.data.masks import real_positions
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel

OPTS = CalibrationOptions(holdout_every=0, batch_size=3)


def llama6() -> LoadedModel:
    """A tiny 6-block Llama, so that two runs fit before the last block."""
    torch.manual_seed(0)
    model = _finish(LlamaForCausalLM(LlamaConfig(**{**_LLAMA_KW, "num_hidden_layers": 6})), 6)
    return LoadedModel(model, None, resolve_arch(model), ref="tiny-llama6", source="test")


def test_runs_of_and_check_removed():
    assert runs_of((1, 2, 3, 7, 9, 10)) == [(1, 4), (7, 8), (9, 11)]
    check_removed((1, 3), 4)
    for bad, word in (
        ((3, 1), "ascending"),
        ((1, 1), "repeats"),
        ((1, 9), "outside"),
        ((1, 2, 3), "fewer than 2"),
    ):
        with pytest.raises(DepthlensError, match=word):
            check_removed(bad, 4)


def _naive_mz(model, spec, w, s, e):
    """M and Z of run [s, e) from output_hidden_states, stacked over the fit tokens."""
    got = {}
    mlp = model.get_submodule(spec.blocks)[s - 1].get_submodule(spec.mlp)
    with hooks(lambda: [mlp.register_forward_hook(lambda m, a, o: got.update(m=first_tensor(o)))]):
        with torch.no_grad():
            hs = model(
                input_ids=w.input_ids,
                attention_mask=w.attention_mask,
                output_hidden_states=True,
                use_cache=False,
            ).hidden_states
    sel = real_positions(w.attention_mask, True)
    m = got["m"]
    z = hs[e] - (hs[s] - m)
    return m[sel].double(), z[sel].double()


def test_joint_fit_is_lstsq_per_run_on_the_original():
    lm = llama6()
    w = random_windows(n=8, seq_len=16, pad_last=4)
    mf = fit_runs(lm, w, (1, 2, 4), OPTS, mode="joint")
    assert [i for i, _ in mf.merges] == [0, 3]
    for (_i, t), (s, e) in zip(mf.merges, [(1, 3), (4, 5)], strict=True):
        m, z = _naive_mz(lm.model, lm.arch, w, s, e)
        torch.testing.assert_close(t, torch.linalg.lstsq(m, z).solution, atol=1e-6, rtol=1e-6)
    assert mf.fit["runs"][0]["fit_tokens"] == 8 * 16 - 4
    assert mf.forward_equivalents == 5 / 6  # one pass, stopped after the last run (block 4)


def test_sequential_fit_sees_earlier_runs_replaced():
    lm = llama6()
    w = random_windows(n=8, seq_len=16)
    mf = fit_runs(lm, w, (1, 2, 4), OPTS, mode="sequential")
    joint = fit_runs(lm, w, (1, 2, 4), OPTS, mode="joint")
    # Naive: physically apply the first run (merge T_1 into block 0, delete blocks 1-2) on
    # a copy, then fit the second run: original block 4 is the copy's block 2.
    part = copy.deepcopy(lm)
    first = plan_cut(part, w, "replaceme-multi", CutOptions(blocks=(1, 2), calibration=OPTS))
    torch.testing.assert_close(first.merges[0][1], mf.merges[0][1])
    apply_cut_(part, first)
    m, z = _naive_mz(part.model, part.arch, w, 2, 3)
    # (the copy holds T_1 merged in float32, the hooked pass applies it in float64)
    torch.testing.assert_close(
        mf.merges[1][1], torch.linalg.lstsq(m, z).solution, atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(mf.merges[1][1], joint.merges[1][1], atol=1e-2)
    assert mf.forward_equivalents == pytest.approx((3 + 5) / 6)


@pytest.mark.parametrize("mode", ["joint", "sequential"])
def test_applied_multi_cut_equals_hooked_reference(mode):
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    plan = plan_cut(
        lm, w, "replaceme-multi", CutOptions(blocks=(1, 3, 5), calibration=OPTS, multi_mode=mode)
    )
    assert plan.to_dict()["merge_blocks"] == [0, 2, 4] and plan.fit["mode"] == mode
    ids, mask = w.input_ids[:3], w.attention_mask[:3]
    with (
        hooks(mlp_transform_hooks(lm.model, lm.arch, plan.merges)),
        skip_blocks(lm.model, lm.arch, plan.removed),
        torch.no_grad(),
    ):
        ref = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    apply_cut_(lm, plan)
    assert lm.num_layers == 3
    with torch.no_grad():
        got = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_multi_default_selection_keeps_block_zero():
    lm = wrap_tiny("llama")
    plan = plan_cut(lm, random_windows(n=20, seq_len=16), "replaceme-multi", CutOptions(n=2))
    assert 0 not in plan.removed and len(plan.removed) == 2 and len(plan.merges) >= 1


@pytest.mark.parametrize(
    "blocks, word",
    [("3,1", "ascending"), ("1,1", "repeats"), ("0,1", "block 0"), ("1,x", "indices")],
)
def test_cli_refuses_bad_removed_sets(blocks, word, tmp_path, capsys):
    out = tmp_path / "pruned"
    code = main(
        ["prune", "smollm2-135m", "--method", "replaceme-multi", "--blocks", blocks, "-o", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and word in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_method_did_you_mean(capsys):
    code = main(["plan", "smollm2-135m", "--method", "beam-lss", "--remove", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'beam-ls'" in err


@pytest.mark.parametrize("removed, word", [([3, 1], "ascending"), ([1, 1], "repeats")])
def test_prune_refuses_an_edited_plan(removed, word, tmp_path, capsys):
    import json

    from depthlens.cut.plan_io import save_plan

    lm = llama6()
    plan = plan_cut(
        lm,
        random_windows(n=10, seq_len=16),
        "replaceme-multi",
        CutOptions(blocks=(1, 3), calibration=OPTS),
    )
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    d = json.loads(path.read_text())
    d["removed"] = removed
    path.write_text(json.dumps(d))
    out = tmp_path / "pruned"
    code = main(["prune", "--plan", str(path), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and word in err and len(err.splitlines()) == 1 and not out.exists()
