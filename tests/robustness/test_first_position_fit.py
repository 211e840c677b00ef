"""The fit quality is reported on ordinary tokens, the first position apart (checked naively)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.cut import CalibrationOptions, CutOptions, plan_cut
from depthlens.cut.calibrate import holdout_rows, relative_residual, solve_ls, stream_span_sums


def _naive_mz(lm, windows, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M and Z for every position: (W, T, d), from a plain full forward with hidden states."""
    mlp = lm.model.model.layers[start - 1].mlp
    got = {}
    h = mlp.register_forward_hook(lambda _m, _a, out: got.__setitem__("m", out))
    try:
        with torch.no_grad():
            out = lm.model(
                input_ids=windows.input_ids,
                attention_mask=windows.attention_mask,
                output_hidden_states=True,
            )
    finally:
        h.remove()
    hs = out.hidden_states
    m = got["m"].double()
    return m, hs[start + n].double() - (hs[start].double() - m)


def _naive_residual(t: torch.Tensor, m: torch.Tensor, z: torch.Tensor) -> float:
    return float(torch.linalg.norm(m @ t - z) / torch.linalg.norm(z))


@pytest.mark.parametrize("fit_first", [True, False])
def test_heldout_residual_split_matches_naive(fit_first: bool) -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=8, seq_len=16)
    opts = CalibrationOptions(holdout_every=4, fit_include_first_token=fit_first)
    sums, _ = stream_span_sums(lm, w, 1, 2, opts)
    m, z = _naive_mz(lm, w, 1, 2)
    held = holdout_rows(len(w), 4)  # windows 3 and 7
    assert held.tolist() == [False, False, False, True, False, False, False, True]
    rest_m, rest_z = (
        m[held][:, 1:].reshape(-1, m.shape[-1]),
        z[held][:, 1:].reshape(-1, m.shape[-1]),
    )
    first_m, first_z = m[held][:, 0], z[held][:, 0]
    assert int(sums.held.n) == 2 * 15 and int(sums.held_first.n) == 2
    t, _ = solve_ls(sums.fit.A, sums.fit.B)
    eye = torch.eye(t.shape[0], dtype=torch.float64)
    for tt in (t, eye):
        assert relative_residual(tt, sums.held) == pytest.approx(
            _naive_residual(tt, rest_m, rest_z), rel=1e-5
        )
        assert relative_residual(tt, sums.held_first) == pytest.approx(
            _naive_residual(tt, first_m, first_z), rel=1e-5
        )
    # The fit windows hold the first position only when asked to.
    assert int(sums.fit.n) == 6 * (16 if fit_first else 15)


def test_preview_states_both_and_says_when_nothing_is_held_back() -> None:
    lm, w = wrap_tiny("llama"), random_windows(n=8, seq_len=16)
    plan = plan_cut(
        lm, w, "replaceme-ls", CutOptions(n=1, calibration=CalibrationOptions(holdout_every=4))
    )
    text = plan.preview()
    assert "on 30 held-back ordinary tokens" in text
    assert "first position (BOS / attention sink) of 2 held-back windows, apart" in text
    plan0 = plan_cut(
        lm, w, "replaceme-ls", CutOptions(n=1, calibration=CalibrationOptions(holdout_every=0))
    )
    assert plan0.fit["heldout_tokens"] == 0
    assert "fit quality: not measured (no held-back windows: --holdout-every 0" in plan0.preview()
