"""Token-mode sampling as a recorded choice: --pool token|last|mean, duplicates, massive rows."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.repr import ReprOptions, analyse_repr
from depthlens.repr.geometry import anisotropy


def _hidden(lm, w):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return lm.model(
            input_ids=w.input_ids, attention_mask=w.attention_mask, output_hidden_states=True
        ).hidden_states


def test_pool_last_takes_one_point_per_window_at_its_last_real_token() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=12, seq_len=16, pad_last=5)
    res = analyse_repr(lm, w, ReprOptions(max_samples=12, cka_batch=8, pool="last"))
    geo = res.samples["geometry"]
    assert res.options["pool"] == "last" and geo["pool"] == "last" and geo["of"] == 12
    assert "window" in geo["rule"] and "massive" in geo and "duplicates" in geo
    assert res.tokens == {"n_tokens": int(w.attention_mask.sum()), "n_windows": 12}
    hs = _hidden(lm, w)
    last = w.attention_mask.sum(1) - 1  # the padded window ends earlier
    for l in range(lm.num_layers):
        x = hs[l][torch.arange(12), last]
        assert res.metrics["anisotropy"][l] == pytest.approx(anisotropy(x), abs=1e-5)


def test_pool_mean_leaves_out_the_first_position() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=10, seq_len=16)
    res = analyse_repr(lm, w, ReprOptions(max_samples=10, cka_batch=8, pool="mean"))
    hs = _hidden(lm, w)
    x = hs[2][:, 1:].mean(1)
    assert res.metrics["anisotropy"][2] == pytest.approx(anisotropy(x), abs=1e-5)


def test_token_pool_is_the_default_and_duplicates_are_counted_and_dropped() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=4, seq_len=16)
    w.input_ids[:, :] = w.input_ids[0]  # four identical windows: every position repeats ×4
    w.input_ids[:, 0] = 1
    res = analyse_repr(lm, w, ReprOptions(max_samples=60, cka_batch=16))
    m = res.metrics
    assert res.options["pool"] == "token"
    # h_0 is the embedding: every repeat of a token is an exact duplicate
    assert m["duplicates"][0] >= 60 - 15 and m["twonn_duplicates"][0] == m["duplicates"][0]
    assert all(n + d == 60 for n, d in zip(m["n_used"], m["twonn_duplicates"], strict=True))
    assert len(m["gride"][0]) >= 1 and all(v > 0 for v in m["gride"][0])


def test_massive_rows_are_counted_and_optionally_excluded() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=6, seq_len=16)
    kept = analyse_repr(lm, w, ReprOptions(max_samples=60, cka_batch=16, massive_k=1.01))
    dropped = analyse_repr(
        lm, w, ReprOptions(max_samples=60, cka_batch=16, massive_k=1.01, exclude_massive=True)
    )
    mk, md = kept.metrics, dropped.metrics
    assert mk["massive"] == md["massive"] and max(mk["massive"]) > 0
    layer = max(range(len(mk["massive"])), key=lambda l: mk["massive"][l])
    assert md["n_used"][layer] <= 60 - mk["massive"][layer] < mk["n_used"][layer] + 1
    assert "removed" in dropped.samples["geometry"]["massive"]


def test_pool_choices_are_checked_per_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DepthlensError, match="--pool first does not apply to a text"):
        ReprOptions(pool="first").resolved(tokens=True)
    with pytest.raises(DepthlensError, match="--pool token does not apply to labelled"):
        ReprOptions(pool="token").resolved(tokens=False)
    assert ReprOptions().resolved(tokens=False).pool == "mean"
    w = random_windows(n=3, seq_len=16)
    with pytest.raises(DepthlensError, match="one point per window"):
        analyse_repr(wrap_tiny("llama"), w, ReprOptions(max_samples=5, pool="last"))
    assert main(["repr", "x", "--pool", "median", "-o", "/tmp/never.json"]) == 2
    assert "--pool" in capsys.readouterr().err
