"""Typed accumulators: named float64 fields, nested parts, checkpoint state, reduce ops."""

from __future__ import annotations

import pytest
import torch

from depthlens.causal.skip import SkipSums
from depthlens.cut.calibrate import GramSums, SpanSums
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import ratio
from depthlens.profiling.run import ProfileSums


def test_state_dict_names_every_leaf_and_round_trips() -> None:
    s = ProfileSums.zeros(3, 2, with_lens=False)
    state = s.state_dict()
    assert "residual.per_block" in state and "residual.angular_distance" in state
    assert not any(k.startswith("lens.") for k in state)  # the lens part is off
    assert state["residual.angular_distance"].shape == (3, 2)
    assert all(t.dtype == torch.float64 and t.device.type == "cpu" for t in state.values())
    filled = {k: torch.full_like(v, float(i)) for i, (k, v) in enumerate(sorted(state.items()))}
    t = ProfileSums.zeros(3, 2, with_lens=False)
    t.load_state_dict(filled)
    assert all(torch.equal(t.state_dict()[k], v) for k, v in filled.items())
    with pytest.raises(DepthlensError, match="other statistics"):
        ProfileSums.zeros(3, 2, with_lens=True).load_state_dict(filled)  # lens fields missing
    with pytest.raises(DepthlensError, match="other statistics"):
        ProfileSums.zeros(4, 2, with_lens=False).load_state_dict(filled)  # other shapes


def test_maxima_are_marked_and_sublayers_optional() -> None:
    s = SkipSums.zeros(4, ("block", "mlp"))
    assert s.attn is None and s.mlp is not None
    ops = {name: how for name, _, how in s._leaves()}
    assert ops["block.future_max"] == ops["mlp.out_kl_max"] == "max"
    assert ops["block.future"] == ops["n_tokens"] == "sum"
    assert not any(k.startswith("attn.") for k in ops)


def test_gram_sums_equal_the_stacked_products() -> None:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(10, 3, dtype=torch.float64, generator=gen)
    z = torch.randn(10, 3, dtype=torch.float64, generator=gen)
    g = GramSums.zeros(3)
    g.add(m[:4], z[:4])
    g.add(m[4:], z[4:])
    torch.testing.assert_close(g.A, m.T @ m)
    torch.testing.assert_close(g.B, m.T @ z)
    assert float(g.C) == pytest.approx(float((z**2).sum())) and int(g.n) == 10
    span = SpanSums(g, GramSums.zeros(3), GramSums.zeros(3))
    parts = ("fit", "held", "held_first")
    assert set(span.state_dict()) == {f"{p}.{k}" for p in parts for k in "ABCn"}


def test_ratio_is_nan_where_nothing_was_counted() -> None:
    r = ratio(torch.tensor([2.0, 3.0], dtype=torch.float64), torch.tensor([4.0, 0.0]))
    assert r[0] == 0.5 and torch.isnan(r[1])


def test_row_batches_cover_each_window_once_across_ranks() -> None:
    from conftest import random_windows

    w = random_windows(n=7, seq_len=4)
    for world in (1, 2, 3):
        got = [int(i) for r in range(world) for b in w.row_batches(2, r, world) for i in b]
        assert sorted(got) == list(range(7))
        assert all(len(b) <= 2 for r in range(world) for b in w.row_batches(2, r, world))
    assert [b.tolist() for b in w.row_batches(3, 1, 2)] == [[1, 3, 5]]
    with pytest.raises(DepthlensError, match="--batch-size"):
        w.row_batches(0)
