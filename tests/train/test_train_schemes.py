"""Each scheme's block equals its formula, computed naively from the same weights."""

from __future__ import annotations

import math

import pytest
import torch

from depthlens.train.model import LabConfig, LabForCausalLM, init_lab_weights_
from depthlens.train.schemes import SCHEMES, drop_path, drop_rates, get_scheme

D, H, T, L = 16, 2, 5, 3


def lab(scheme: str, drop: float = 0.0) -> LabForCausalLM:
    cfg = LabConfig(
        vocab_size=40,
        hidden_size=D,
        intermediate_size=4 * D,
        num_hidden_layers=L,
        num_attention_heads=H,
        scheme=scheme,
        drop_path=drop,
    )
    m = LabForCausalLM(cfg)
    init_lab_weights_(m, 0)
    with torch.no_grad():  # non-trivial norm weights and ReZero gates
        for n, p in m.named_parameters():
            if n.endswith((".gate", "norm.weight")):
                p.copy_(torch.rand(p.shape, generator=torch.Generator().manual_seed(len(n))) + 0.5)
    assert sum(p.numel() for p in m.parameters()) < 20_000  # tiny
    return m.eval()


def naive_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)


def naive_attn(x: torch.Tensor, a: torch.nn.Module) -> torch.Tensor:
    hd = D // H
    q, k, v = (x @ w.weight.T for w in (a.q_proj, a.k_proj, a.v_proj))
    out = torch.zeros_like(x)
    half = hd // 2
    for h in range(H):
        sl = slice(h * hd, (h + 1) * hd)
        qh, kh, vh = q[:, :, sl].clone(), k[:, :, sl].clone(), v[:, :, sl]
        for t in range(T):  # rotate pair (i, i + hd/2) by t·θ_i
            for i in range(half):
                ang = t / (10000.0 ** (2 * i / hd))
                c, s = math.cos(ang), math.sin(ang)
                for z in (qh, kh):
                    x1, x2 = z[:, t, i].clone(), z[:, t, i + half].clone()
                    z[:, t, i], z[:, t, i + half] = x1 * c - x2 * s, x2 * c + x1 * s
        scores = qh @ kh.transpose(1, 2) / math.sqrt(hd)
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        out[:, :, sl] = scores.softmax(-1) @ vh
    return out @ a.o_proj.weight.T


def naive_mlp(x: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
    g, u = x @ m.gate_proj.weight.T, x @ m.up_proj.weight.T
    return (g * torch.sigmoid(g) * u) @ m.down_proj.weight.T


def naive_block(scheme: str, h: torch.Tensor, blk: torch.nn.Module, ell: int) -> torch.Tensor:
    at, ff = blk.attention, blk.feed_forward
    fa = lambda x: naive_attn(x, at.branch)  # noqa: E731
    fm = lambda x: naive_mlp(x, ff.branch)  # noqa: E731
    if scheme == "pre-ln":
        h = h + fa(naive_norm(h, at.norm.weight))
        return h + fm(naive_norm(h, ff.norm.weight))
    if scheme == "lns":
        h = h + fa(naive_norm(h, at.norm.weight) / math.sqrt(ell))
        return h + fm(naive_norm(h, ff.norm.weight) / math.sqrt(ell))
    if scheme == "scaled":
        h = h + fa(naive_norm(h, at.norm.weight)) / math.sqrt(L)
        return h + fm(naive_norm(h, ff.norm.weight)) / math.sqrt(L)
    if scheme in ("post-ln", "deepnorm"):
        alpha = (2 * L) ** 0.25 if scheme == "deepnorm" else 1.0
        h = naive_norm(alpha * h + fa(h), at.norm.weight)
        return naive_norm(alpha * h + fm(h), ff.norm.weight)
    assert scheme == "rezero"
    h = h + at.gate * fa(h)
    return h + ff.gate * fm(h)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_block_matches_formula(scheme: str) -> None:
    m = lab(scheme)
    h = torch.randn(2, T, D, generator=torch.Generator().manual_seed(1))
    from depthlens.train.model import rope_cos_sin

    cos, sin = rope_cos_sin(T, D // H, 10000.0, h.device)
    with torch.no_grad():
        for idx in (0, L - 1):
            blk = m.model.layers[idx]
            got = blk(h, cos, sin)
            want = naive_block(scheme, h, blk, idx + 1)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_deepnorm_init_gain() -> None:
    m = lab("deepnorm")
    ref = lab("pre-ln")  # same seed, same shapes: only β differs
    beta = (8 * L) ** -0.25
    a, r = m.model.layers[1].attention.branch, ref.model.layers[1].attention.branch
    torch.testing.assert_close(a.v_proj.weight, r.v_proj.weight * beta)
    torch.testing.assert_close(a.q_proj.weight, r.q_proj.weight)  # q, k keep gain 1
    assert SCHEMES["deepnorm"].skip_scale(L) == pytest.approx((2 * L) ** 0.25)


def test_rezero_starts_as_identity() -> None:
    cfg = LabConfig(
        vocab_size=40,
        hidden_size=D,
        intermediate_size=4 * D,
        num_hidden_layers=2,
        num_attention_heads=H,
        scheme="rezero",
    )
    m = LabForCausalLM(cfg)
    init_lab_weights_(m, 0)
    ids = torch.randint(0, 40, (1, T))
    with torch.no_grad():
        emb = m.model.embed_tokens(ids)
        torch.testing.assert_close(m(ids).logits, emb @ m.lm_head.weight.T)


def test_drop_path_rates_and_eval_identity() -> None:
    assert drop_rates(0.2, 4) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    x = torch.ones(4000, 3, 2)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    torch.manual_seed(0)
    y = drop_path(x, 0.5, training=True)
    per_seq = y[:, 0, 0]
    assert set(per_seq.unique().tolist()) == {0.0, 2.0}  # whole sequences dropped, rest ×2
    assert (y == y[:, :1, :1]).all()
    assert abs(float(y.mean()) - 1.0) < 0.06  # expectation kept
    m = lab("pre-ln", drop=0.3)
    assert [b.feed_forward.p_drop for b in m.model.layers] == pytest.approx([0.1, 0.2, 0.3])
    ids = torch.randint(0, 40, (2, T))
    with torch.no_grad():  # eval: deterministic, identical to the model without drop-path
        torch.testing.assert_close(m(ids).logits, lab("pre-ln")(ids).logits)


def test_unknown_scheme_did_you_mean() -> None:
    from depthlens.errors import DepthlensError

    with pytest.raises(DepthlensError, match="did you mean 'deepnorm'"):
        get_scheme("deepnrom")


def test_scheme_records_refuse_an_export_they_cannot_make() -> None:
    from depthlens.train.schemes import SCHEMES, Scheme
    from depthlens.train.wiring import post_norm, pre_norm

    def doubled(sub, h, *args):  # noqa: ANN001, ANN002, ANN202 - a custom forward
        return pre_norm(sub, h, *args) * 2

    with SCHEMES.scoped():
        with pytest.raises(RuntimeError, match="folds into Llama"):
            SCHEMES.register(Scheme("post-llama", "N(h + F(h))", "post", post_norm, "x", True))
        with pytest.raises(RuntimeError, match="folds into Llama"):
            SCHEMES.register(Scheme("doubled", "2(h + F(N(h)))", "pre", doubled, "x", True))
        SCHEMES.register(Scheme("doubled", "2(h + F(N(h)))", "pre", doubled, "x", False))
        assert get_scheme("doubled").forward is doubled
    assert "doubled" not in SCHEMES
