"""The one-pass profile against naive, obviously-correct computations on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.arch.spec import blocks_of
from depthlens.capture import capture_blocks
from depthlens.metrics.lens import FinalDist, Lens, LensKernel, layer_stats, prediction_depth
from depthlens.profiling import ProfileOptions, profile, token_masks

FAMILIES = ["llama", "gpt2", "gpt_neox", "gpt_neox_sequential", "gemma3", "phi", "qwen3", "bert"]
EAGER = dict(lens_kernel="eager")


def naive_states(lm, data):
    """h_0..h_L and a_l per window, collected by hand-written hooks (not depthlens')."""
    spec, model = lm.arch, lm.model
    blocks = blocks_of(model, spec)
    rec: dict = {}
    handles = []
    for l, blk in enumerate(blocks):

        def on_block(m, args, kwargs, out, l=l):
            h = kwargs.get("hidden_states", args[0] if args else None)
            rec[("in", l)] = h
            rec[("out", l)] = out[0] if isinstance(out, tuple) else out

        def on_attn(m, args, kwargs, out, l=l):
            o = out[0] if isinstance(out, tuple) else out
            if spec.attn_mode == "stream":
                o = o - kwargs.get("hidden_states", args[0] if args else None)
            rec[("attn", l)] = o

        handles.append(blk.register_forward_hook(on_block, with_kwargs=True))
        attn_mod = blk.get_submodule(spec.attn)
        handles.append(attn_mod.register_forward_hook(on_attn, with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(input_ids=data.input_ids, attention_mask=data.attention_mask)
    finally:
        for h in handles:
            h.remove()
    L = len(blocks)
    states = [rec[("in", 0)]] + [rec[("out", l)] for l in range(L)]
    attn = [rec[("attn", l)] for l in range(L)]
    return states, attn, out


def naive_metrics(lm, data, include_first=False):
    states, attn, _ = naive_states(lm, data)
    mask = data.attention_mask.bool().clone()
    if not include_first:
        mask[:, 0] = False
    L = len(attn)
    per = {
        k: [[] for _ in range(L)]
        for k in (
            "rel_contrib_attn",
            "rel_contrib_mlp",
            "rel_contrib_block",
            "cos_attn",
            "cos_mlp",
            "cos_block",
            "block_influence",
            "resid_rms_growth",
        )
    }
    ang = [[[] for _ in range(L)] for _ in range(L + 1)]
    for w in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if not mask[w, t]:
                continue
            hs = [s[w, t].double() for s in states]
            for l in range(L):
                h, o, a = hs[l], hs[l + 1], attn[l][w, t].double()
                d = o - h
                m = d - a
                x = h if lm.arch.wiring.parallel else h + a  # the stream the MLP reads
                cos = lambda x, y: float(x @ y / (x.norm() * y.norm()))  # noqa: E731
                per["rel_contrib_attn"][l].append(float(a.norm() / h.norm()))
                per["rel_contrib_mlp"][l].append(float(m.norm() / x.norm()))
                per["rel_contrib_block"][l].append(float(d.norm() / h.norm()))
                per["cos_attn"][l].append(cos(a, h))
                per["cos_mlp"][l].append(cos(m, x))
                per["cos_block"][l].append(cos(d, h))
                per["block_influence"][l].append(1 - cos(h, o))
                per["resid_rms_growth"][l].append(float(o.norm() / h.norm()))
            for l in range(L + 1):
                for n in range(1, L + 1 - l):
                    c = max(-1.0, min(1.0, cos(hs[l], hs[l + n])))
                    ang[l][n - 1].append(math.acos(c) / math.pi)
    means = {k: [sum(v) / len(v) for v in vals] for k, vals in per.items()}
    return means, ang


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_metrics_match_naive(family: str) -> None:
    lm = wrap_tiny(family)
    data = random_windows(n=5, seq_len=12, pad_last=4)
    prof = profile(lm, data, ProfileOptions(batch_size=2, **EAGER), progress=False)
    means, ang = naive_metrics(lm, data)
    for name, vals in means.items():
        assert prof.metrics[name] == pytest.approx(vals, rel=1e-4, abs=1e-5), name
    L = lm.num_layers
    for l in range(L):
        for n in range(1, prof.options["n_max"] + 1):
            got = prof.angular_distance[l][n - 1]
            if l + n > L:
                assert got is None
            else:
                want = sum(ang[l][n - 1]) / len(ang[l][n - 1])
                assert got == pytest.approx(want, abs=2e-4), (l, n)
    assert prof.tokens["residual"] == int(data.attention_mask.sum()) - data.input_ids.shape[0]


def _naive_lens(lm, data, sel):
    states, _, out = naive_states(lm, data)
    lens = Lens.of(lm.model, lm.arch)
    L = lm.num_layers
    rows = {k: [[] for _ in range(L)] for k in ("kl", "kl_rev", "jsd", "top1", "top5", "ce", "ent")}
    for w, t in sel:
        with torch.no_grad():
            zL = lens.logits(states[L][w, t][None])[0].double()
        pL = torch.softmax(zL, -1)
        for l in range(L):
            with torch.no_grad():
                z = lens.logits(states[l + 1][w, t][None])[0].double()
            p = torch.softmax(z, -1)
            mix = (p + pL) / 2
            kl = lambda a, b: float((a * (a.log() - b.log())).sum())  # noqa: E731
            rows["kl"][l].append(kl(pL, p))
            rows["kl_rev"][l].append(kl(p, pL))
            rows["jsd"][l].append(0.5 * kl(p, mix) + 0.5 * kl(pL, mix))
            rows["top1"][l].append(float(z.argmax() == zL.argmax()))
            top = set(z.topk(5).indices.tolist()) & set(zL.topk(5).indices.tolist())
            rows["top5"][l].append(len(top) / 5)
            rows["ent"][l].append(float(-(p * p.log()).sum()))
            if t + 1 < data.input_ids.shape[1] and data.attention_mask[w, t + 1]:
                rows["ce"][l].append(float(-torch.log_softmax(z, -1)[data.input_ids[w, t + 1]]))
    return {k: [sum(v) / len(v) for v in vals] for k, vals in rows.items()}, out


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("kernel", ["eager", "compiled"])
def test_lens_metrics_match_naive(family: str, kernel: str) -> None:
    if kernel == "compiled" and family != "llama":
        pytest.skip("the compiled kernel is checked once (compile time)")
    lm = wrap_tiny(family)
    data = random_windows(n=4, seq_len=10, pad_last=3)
    opts = ProfileOptions(batch_size=3, lens_tokens=20, lens_kernel=kernel)
    prof = profile(lm, data, opts, progress=False)
    masks = token_masks(data, opts)
    sel = [tuple(ix) for ix in masks.lens.nonzero().tolist()]
    assert len(sel) == 20 == prof.tokens["lens"]
    want, _ = _naive_lens(lm, data, sel)
    pairs = {
        "lens_kl": "kl",
        "lens_kl_rev": "kl_rev",
        "lens_jsd": "jsd",
        "lens_top1_agree": "top1",
        "lens_top5_overlap": "top5",
        "lens_ce": "ce",
        "lens_entropy": "ent",
    }
    for ours, theirs in pairs.items():
        assert prof.metrics[ours] == pytest.approx(want[theirs], rel=1e-3, abs=1e-5), ours
    assert prof.metrics["lens_top1_agree"][-1] == 1.0
    assert prof.metrics["lens_kl"][-1] == pytest.approx(0.0, abs=1e-6)
    if kernel == "eager":
        assert prof.metrics["lens_kl"][-1] == 0.0  # same logits, same formula: exactly 0
    assert all(0.0 <= v <= math.log(2) for v in prof.metrics["lens_jsd"])
    if kernel == "compiled":
        assert prof.summary["lens_kernel_used"] in ("compiled", "eager")


def test_hooked_forward_is_bit_identical_and_hooks_are_removed(tiny_llama) -> None:
    model = tiny_llama.model
    data = random_windows(n=3, seq_len=12, pad_last=2)
    with torch.no_grad():
        plain = model(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
        with capture_blocks(model, tiny_llama.arch) as trace:
            hooked = model(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
        assert trace.states[-1] is not None
    assert torch.equal(plain, hooked)
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_after_an_error(tiny_llama) -> None:
    data = random_windows(n=2, seq_len=8)
    with pytest.raises(RuntimeError), capture_blocks(tiny_llama.model, tiny_llama.arch):
        tiny_llama.model(input_ids=data.input_ids, attention_mask=data.attention_mask)
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in tiny_llama.model.modules())


def test_lens_of_last_state_reproduces_model_logits(tiny_llama) -> None:
    data = random_windows(n=2, seq_len=8)
    states, _, out = naive_states(tiny_llama, data)
    with torch.no_grad():
        z = Lens.of(tiny_llama.model, tiny_llama.arch).logits(states[-1])
    assert torch.allclose(z, out.logits, atol=1e-6)


def test_batch_size_does_not_change_the_result(tiny_llama) -> None:
    # Batch shape changes float32 matmul rounding (~1e-7), nothing else: the sums are
    # per token, and the lens sample is fixed before batching.
    data = random_windows(n=6, seq_len=12, pad_last=3)
    a = profile(
        tiny_llama, data, ProfileOptions(batch_size=1, lens_tokens=30, **EAGER), progress=False
    )
    b = profile(
        tiny_llama, data, ProfileOptions(batch_size=4, lens_tokens=30, **EAGER), progress=False
    )
    for k in a.metrics:
        assert a.metrics[k] == pytest.approx(b.metrics[k], rel=1e-4, abs=1e-7), k
    assert a.prediction_depth == b.prediction_depth


def test_first_token_and_last_token_options(tiny_llama) -> None:
    data = random_windows(n=3, seq_len=10)
    a = profile(tiny_llama, data, ProfileOptions(lens=False), progress=False)
    b = profile(
        tiny_llama, data, ProfileOptions(lens=False, include_first_token=True), progress=False
    )
    c = profile(tiny_llama, data, ProfileOptions(lens=False, last_token_only=True), progress=False)
    assert b.tokens["residual"] == a.tokens["residual"] + 3
    assert c.tokens["angular"] == 3 and c.tokens["residual"] == a.tokens["residual"]
    assert c.angular_distance != a.angular_distance
    assert b.options["include_first_token"] is True  # every option is in the output


def test_prediction_depth_definition() -> None:
    agree = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    # token 0: agrees at 0 and 2 but not 1 -> settles at 2; token 2: always -> 0.
    assert prediction_depth(agree).tolist() == [2, 1, 0, 2]


def test_jsd_range_and_identity() -> None:
    torch.manual_seed(0)
    z = torch.randn(7, 50) * 4
    fin = FinalDist.of(z.clone())
    st = layer_stats(z, fin, LensKernel("eager"))
    assert torch.all(st["lens_jsd"] < 1e-6) and torch.all(st["lens_kl"] == 0)
    st2 = layer_stats(torch.randn(7, 50) * 10, fin, LensKernel("eager"))
    assert torch.all((st2["lens_jsd"] >= 0) & (st2["lens_jsd"] <= math.log(2)))
