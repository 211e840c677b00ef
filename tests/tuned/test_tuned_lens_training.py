"""Training the tuned lens lowers held-out KL(p_L ‖ p_l) on a tiny model."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.errors import DepthlensError
from depthlens.tuned.evaluate import compare_lenses
from depthlens.tuned.lens import readout_for
from depthlens.tuned.train import TrainOptions, train_lens


def _sharp_tiny():
    """Tiny llama with a scaled head, so its layers disagree by more than rounding."""
    lm = wrap_tiny("llama")
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(8.0)
    return lm


def _naive_kl(lm, lens, data, layer: int) -> float:
    """Mean KL(p_L ‖ p_lens(h_layer)) from output_hidden_states, independent of the code."""
    total, n = 0.0, 0
    with torch.no_grad():
        out = lm.model(input_ids=data.input_ids, output_hidden_states=True)
        hs = out.hidden_states  # HF: h_0..h_{L-1} raw, last one already normed
        logp_fin = torch.log_softmax(out.logits.float(), -1)[:, 1:]
        h = hs[layer][:, 1:].reshape(-1, hs[layer].shape[-1])
        logq = torch.log_softmax(lens.logits(h, layer), -1).view(*logp_fin.shape)
        kl = (logp_fin.exp() * (logp_fin - logq)).sum(-1)
        total, n = float(kl.sum()), kl.numel()
    return total / n


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_lowers_held_out_kl(optimizer: str) -> None:
    lm = _sharp_tiny()
    train = random_windows(n=8, seq_len=16, seed=0)
    held = random_windows(n=4, seq_len=16, seed=7)
    opts = TrainOptions(steps=16, batch_size=4, optimizer=optimizer, lr=0.01)
    tuned, rec = train_lens(lm, train, opts, progress=False)
    logit = readout_for(lm, "logit")[0]
    sums = compare_lenses(lm, held, {"logit": logit, "tuned": tuned}, progress=False)
    lo, tu = sums["logit"].means()["lens_kl"], sums["tuned"].means()["lens_kl"]
    assert all(b < a for a, b in zip(lo[:-1], tu[:-1], strict=True)), (lo, tu)
    assert tu[-1] == pytest.approx(0.0, abs=1e-6)  # h_L is read without a translator
    # compare_lenses agrees with a naive computation from HF's own hidden states.
    for layer in (1, 2):
        assert _naive_kl(lm, tuned, held, layer) == pytest.approx(tu[layer - 1], rel=1e-3)
    assert rec.loss_last_steps[1] < rec.loss_first_step[1]


def test_train_options_out_of_range() -> None:
    for bad in (
        TrainOptions(steps=-1),
        TrainOptions(lr=0.0),
        TrainOptions(momentum=1.0),
        TrainOptions(warmup=1.5),
        TrainOptions(batch_size=0),
    ):
        with pytest.raises(DepthlensError):
            bad.validate()


def test_lstsq_start_is_the_least_squares_fit_of_the_final_state() -> None:
    from depthlens.tuned.init import lstsq_init_
    from depthlens.tuned.lens import TunedLens
    from depthlens.tuned.train import train_positions

    lm = wrap_tiny("llama")
    data = random_windows(n=8, seq_len=16, seed=3)
    lens = TunedLens.for_model(lm)
    valid = train_positions(data, include_first=False)
    n = lstsq_init_(lens, lm, data, valid, batch_size=3, ridge=0.0)
    assert n == int(valid.sum())
    # Naive: HF's own hidden states, h_L taken at the final norm's input, one lstsq solve.
    final: list[torch.Tensor] = []
    hook = lm.model.model.norm.register_forward_pre_hook(lambda _m, a: final.append(a[0]))
    try:
        with torch.no_grad():
            hs = lm.model(input_ids=data.input_ids, output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    y = final[0][valid].double()
    for l in (0, 2):
        x = torch.cat([hs[l][valid].double(), torch.ones(n, 1, dtype=torch.float64)], 1)
        m = torch.linalg.lstsq(x, y).solution
        want_w = m[:-1].T - torch.eye(x.shape[1] - 1, dtype=torch.float64)
        t = lens.translators[l]
        torch.testing.assert_close(t.weight.double(), want_w, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(t.bias.double(), m[-1], rtol=1e-3, atol=1e-3)


def test_heldout_curve_is_recorded_and_matches_an_independent_kl() -> None:
    lm = _sharp_tiny()
    train = random_windows(n=8, seq_len=16, seed=0)
    held = random_windows(n=2, seq_len=16, seed=5)
    opts = TrainOptions(optimizer="adam", lr=3e-3, steps=6, batch_size=2, eval_every=2)
    lens, rec = train_lens(lm, train, opts, progress=False, heldout=held)
    curve = rec.heldout_kl
    assert curve is not None
    assert curve.tokens == [0, 60, 120, 180] and curve.n_tokens == 2 * 15
    assert len(curve.kl) == 4 and all(len(k) == lm.num_layers for k in curve.kl)
    # the last point is the trained lens on the held-out windows, computed independently
    for layer in (0, lm.num_layers - 1):
        assert curve.kl[-1][layer] == pytest.approx(_naive_kl(lm, lens, held, layer), rel=1e-4)
    assert sum(curve.kl[-1]) < sum(curve.kl[0])  # training lowered it
    with pytest.raises(DepthlensError, match="--eval-every"):
        TrainOptions(eval_every=-1).validate()
