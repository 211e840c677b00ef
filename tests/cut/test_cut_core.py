"""Cutting depth on tiny random models: LS fit, merge algebra, surgery, checkpoints."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.capture.hooks import first_tensor, hooks
from depthlens.cut import CalibrationOptions, CutOptions, CutPlan, apply_cut_, plan_cut, save_pruned
from depthlens.cut.calibrate import solve_ls, stream_span_sums
from depthlens.cut.select import skip_blocks
from depthlens.data.masks import real_positions
from depthlens.errors import DepthlensError

FAMILIES = ["llama", "qwen2", "gemma3", "gpt2"]


def _stack_mz(lm, windows, start, n):
    """Naive: full forward with output_hidden_states, stack M and Z over valid tokens."""
    spec = lm.arch
    mlp = lm.model.get_submodule(spec.blocks)[start - 1].get_submodule(spec.mlp)
    got = {}
    with hooks(lambda: [mlp.register_forward_hook(lambda m, a, o: got.update(m=first_tensor(o)))]):
        with torch.no_grad():
            out = lm.model(
                input_ids=windows.input_ids,
                attention_mask=windows.attention_mask,
                output_hidden_states=True,
                use_cache=False,
            )
    hs = out.hidden_states
    m = got["m"]
    z = hs[start + n] - (hs[start] - m)
    # The fit keeps the first position by default.
    sel = real_positions(windows.attention_mask, True)
    return m[sel].double(), z[sel].double()


def test_ls_matches_lstsq_and_batch_split():
    lm = wrap_tiny("llama")
    w = random_windows(n=6, seq_len=16, pad_last=5)
    opts1 = CalibrationOptions(holdout_every=0, batch_size=6)
    opts3 = CalibrationOptions(holdout_every=0, batch_size=2)
    s1, _ = stream_span_sums(lm, w, 1, 2, opts1)
    s3, _ = stream_span_sums(lm, w, 1, 2, opts3)
    for k in ("A", "B", "C", "n"):
        torch.testing.assert_close(getattr(s1.fit, k), getattr(s3.fit, k), rtol=1e-9, atol=1e-9)
    m, z = _stack_mz(lm, w, 1, 2)
    assert int(s1.fit.n) == m.shape[0] == 6 * 16 - 5
    t, alpha = solve_ls(s1.fit.A, s1.fit.B)
    ref = torch.linalg.lstsq(m, z).solution
    assert alpha == 0.0
    torch.testing.assert_close(t, ref, atol=1e-6, rtol=1e-6)


def _reference_logits(lm, plan: CutPlan, ids, mask):
    """Original model with the removed blocks skipped and T applied to block s−1's MLP."""
    spec = lm.arch
    handles = []
    if plan.transform is not None:
        mlp = lm.model.get_submodule(spec.blocks)[plan.merge_into].get_submodule(spec.mlp)
        t = plan.transform.float()

        def times_t(_m, _a, out):
            return first_tensor(out) @ t

        handles = [lambda: [mlp.register_forward_hook(times_t)]]
    with skip_blocks(lm.model, spec, plan.removed), torch.no_grad():
        if handles:
            with hooks(handles[0]):
                return lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        return lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def _pruned(family, tmp_path):
    """Cut 2 blocks of tiny ``family``: (lm, plan, saved dir, ids, mask, skip reference)."""
    lm = wrap_tiny(family)
    w = random_windows(n=20, seq_len=16)
    method = "angular" if family == "gemma3" else "replaceme-ls"
    plan = plan_cut(lm, w, method, CutOptions(n=2))
    ids, mask = w.input_ids[:3], w.attention_mask[:3]
    ref = _reference_logits(lm, plan, ids, mask)
    n0 = lm.num_layers
    apply_cut_(lm, plan)
    out = save_pruned(lm, plan, tmp_path / f"pruned-{family}")
    return lm, plan, n0, out, ids, mask, ref


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_logits_equal_skip_reference_and_reload(family, tmp_path):
    lm, plan, n0, out, ids, mask, ref = _pruned(family, tmp_path)
    first = plan.removed[0]
    assert plan.n_removed == 2 and plan.removed == (first, first + 1)
    assert lm.num_layers == n0 - 2
    cfg = lm.model.config.get_text_config()
    assert cfg.num_hidden_layers == n0 - 2
    with torch.no_grad():
        got = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    if family == "gemma3":
        kept = [i for i in range(n0) if i not in plan.removed]
        full = ["sliding_attention"] * 5 + ["full_attention"]
        assert cfg.layer_types == [full[i] for i in kept]
    assert (out / "depthlens.json").is_file() and (out / "model.safetensors").is_file()
    check = {}
    exec(RELOAD_CHECK, check)  # the same check the fresh process of the e2e test runs
    check["reload_and_check"](str(out), ids, got)


# Plain transformers reloads a pruned checkpoint: same logits, and generation with the KV
# cache equals generation without it. Source text, so a fresh process can run it too.
RELOAD_CHECK = textwrap.dedent("""
    import torch
    from transformers import AutoModelForCausalLM

    def reload_and_check(path, ids, ref):
        m = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            got = m(input_ids=ids, use_cache=False).logits
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
        out = m.generate(ids[:1, :6], max_new_tokens=8, do_sample=False, use_cache=True)
        full = m.generate(ids[:1, :6], max_new_tokens=8, do_sample=False, use_cache=False)
        assert out.shape[1] == 14 and torch.equal(out, full), (out, full)
""")


@pytest.mark.e2e  # a fresh process: nothing of depthlens (or of this process) is imported
def test_pruned_checkpoints_reload_in_a_fresh_process(tmp_path):
    cases = []
    for family in FAMILIES:
        lm, _plan, _n0, out, ids, mask, _ref = _pruned(family, tmp_path)
        with torch.no_grad():
            got = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        torch.save({"ids": ids, "ref": got}, tmp_path / f"{family}.pt")
        cases.append((str(out), str(tmp_path / f"{family}.pt")))
    code = RELOAD_CHECK + textwrap.dedent(f"""
        import sys
        for path, blob in {cases!r}:
            t = torch.load(blob)
            reload_and_check(path, t["ids"], t["ref"])
        assert "depthlens" not in sys.modules
        print("ok", len({cases!r}))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and f"ok {len(FAMILIES)}" in res.stdout, res.stderr[-2000:]


@pytest.mark.parametrize(
    "method", ["block-influence", "greedy-loss", "last", "random", "replaceme-cos"]
)
def test_other_methods_choose_n_blocks(method):
    lm = wrap_tiny("llama")
    w = random_windows(n=20, seq_len=16)
    opts = CalibrationOptions(cos_epochs=2, cos_batch=64, max_samples=200)
    plan = plan_cut(lm, w, method, CutOptions(n=2, calibration=opts, greedy_windows=2))
    assert len(set(plan.removed)) == 2 and all(0 <= i < 4 for i in plan.removed)
    if method == "last":
        assert plan.removed == (1, 2)
    if method == "replaceme-cos":
        assert plan.fit["cos_cos_loss_fit"] <= plan.fit["cos_cos_loss_identity"] + 1e-6
        assert plan.fit["cos_n_samples"] == 200
    back = CutPlan.from_dict(plan.to_dict())
    assert back.removed == plan.removed and back.method == method


def test_greedy_loss_first_round_is_the_cheapest_single_skip():
    from depthlens.cut.select import calibration_loss

    lm = wrap_tiny("llama")
    w = random_windows(n=4, seq_len=16)
    plan = plan_cut(lm, w, "greedy-loss", CutOptions(n=1, greedy_windows=4))
    losses = [calibration_loss(lm, w, (i,), 4) for i in range(4)]
    assert plan.removed == (min(range(4), key=lambda i: losses[i]),)
    # the skip hooks are gone afterwards: the model is unchanged
    assert not any(b._forward_hooks for b in lm.model.model.layers)


def test_replaceme_refused_on_gemma3_names_angular():
    lm = wrap_tiny("gemma3")
    with pytest.raises(DepthlensError, match="angular"):
        plan_cut(lm, random_windows(n=4), "replaceme-ls", CutOptions(n=2))


@pytest.mark.parametrize("kw", [{"n": 0}, {"n": 4}, {"ratio": 1.5}, {"ratio": 0.0}])
def test_bad_amounts(kw):
    lm = wrap_tiny("llama")
    with pytest.raises(DepthlensError):
        plan_cut(lm, random_windows(n=4), "last", CutOptions(**kw))


def test_too_little_calibration_text():
    lm = wrap_tiny("llama")  # hidden 32: needs ≥ 32 fit tokens
    with pytest.raises(DepthlensError, match="too little calibration"):
        plan_cut(lm, random_windows(n=2, seq_len=8), "replaceme-ls", CutOptions(n=1))


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    lm = wrap_tiny("llama")
    plan = plan_cut(lm, random_windows(n=4), "last", CutOptions(n=1))
    apply_cut_(lm, plan)

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lm.model, "save_pretrained", boom)
    with pytest.raises(KeyboardInterrupt):
        save_pruned(lm, plan, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    with pytest.raises(DepthlensError, match="overwrite"):
        save_pruned(lm, plan, tmp_path / "out")


def test_calibration_stops_after_the_span_and_preview_reports_fit():
    lm = wrap_tiny("llama")
    ran = []
    blocks = lm.model.model.layers
    with hooks(
        lambda: [
            b.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
            for i, b in enumerate(blocks)
        ]
    ):
        stream_span_sums(lm, random_windows(n=4), 1, 1, CalibrationOptions(batch_size=4))
    assert sorted(set(ran)) == [0, 1]  # blocks 2 and 3 never ran
    plan = plan_cut(
        lm,
        random_windows(n=20),
        "replaceme-ls",
        CutOptions(n=1, calibration=CalibrationOptions(holdout_every=4)),
    )
    text = plan.preview()
    assert "fit quality (ls) on" in text and "ideal speed-up" in text
    assert "first position (BOS / attention sink)" in text
    # Ordinary tokens and the first position are held out apart (docs/FIRST_POSITION.md).
    assert plan.fit["heldout_tokens"] == 5 * 15 and plan.fit["heldout_first_positions"] == 5
    assert 0 <= plan.fit["rel_residual_ls_fit"] <= plan.fit["rel_residual_ls_heldout"] < 10


def test_ls_beats_identity_on_the_fit_tokens():
    from depthlens.cut.calibrate import relative_residual

    lm = wrap_tiny("qwen2")
    sums, _ = stream_span_sums(lm, random_windows(n=10), 1, 2, CalibrationOptions(holdout_every=0))
    t, _ = solve_ls(sums.fit.A, sums.fit.B)
    eye = torch.eye(t.shape[0], dtype=torch.float64)
    assert relative_residual(t, sums.fit) < relative_residual(eye, sums.fit)
