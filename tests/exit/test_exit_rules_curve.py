"""Early-exit rules (CALM) against naive per-token loops; the curve's FLOPs and agreement."""

from __future__ import annotations

import math

import pytest
import torch

from depthlens.errors import DepthlensError
from depthlens.exit.curve import Readings, exit_curve, rule_point
from depthlens.exit.rules import ExitRule, exit_depth, fires_now, parse_thresholds

L, N = 6, 40


def _readings(seed: int = 0) -> Readings:
    gen = torch.Generator().manual_seed(seed)
    top1 = torch.randint(0, 3, (N, L), generator=gen)
    conf = torch.rand(N, L, generator=gen, dtype=torch.float64)
    ent = torch.rand(N, L, generator=gen, dtype=torch.float64) * 3
    nll = torch.rand(N, L, generator=gen, dtype=torch.float64) * 4
    nll[-3:] = torch.nan  # tokens without a next token
    return Readings(top1, conf, ent, nll)


def _naive_depth(rule: ExitRule, r: Readings, i: int) -> int:
    for e in range(1, L + 1):
        if e == L:
            return L
        if e < rule.min_depth:
            continue
        if rule.kind == "confidence" and r.conf[i, e - 1] >= rule.threshold:
            return e
        if rule.kind == "entropy" and r.entropy[i, e - 1] <= rule.threshold:
            return e
        k = int(rule.threshold)
        if rule.kind == "settled" and e >= k + 1:
            window = [int(r.top1[i, d - 1]) for d in range(e - k, e + 1)]
            if len(set(window)) == 1:
                return e
    return L


@pytest.mark.parametrize(
    "rule",
    [
        ExitRule("confidence", 0.8),
        ExitRule("entropy", 0.5),
        ExitRule("settled", 1),
        ExitRule("settled", 2),
        ExitRule("confidence", 0.5, min_depth=3),
    ],
)
def test_exit_depth_matches_naive_loop(rule: ExitRule) -> None:
    r = _readings()
    got = exit_depth(rule, r.conf, r.entropy, r.top1)
    want = [_naive_depth(rule, r, i) for i in range(N)]
    assert got.tolist() == want
    # The decoder's one-token form agrees with the batched form.
    for i in range(N):
        hist: list[int] = []
        dec = L
        for e in range(1, L):
            hist.append(int(r.top1[i, e - 1]))
            if fires_now(rule, e, float(r.conf[i, e - 1]), float(r.entropy[i, e - 1]), hist):
                dec = e
                break
        assert dec == want[i]


def test_rule_point_flops_agreement_and_perplexity() -> None:
    r = _readings(1)
    costs = {
        "blocks": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "head": 100.0,
        "readout": 7.0,
        "total": 310.0,
    }
    rule = ExitRule("confidence", 0.7)
    p = rule_point(rule, r, costs)
    depth = [_naive_depth(rule, r, i) for i in range(N)]
    skipped = [sum(costs["blocks"][e:]) for e in depth]
    assert p["mean_exit_depth"] == pytest.approx(sum(depth) / N)
    assert p["flops_saved"] == pytest.approx(sum(skipped) / N / 310.0)
    net = [s - (e - 1) * 7.0 for s, e in zip(skipped, depth, strict=True)]
    assert p["flops_saved_net"] == pytest.approx(sum(net) / N / 310.0)
    agree = [int(r.top1[i, depth[i] - 1]) == int(r.top1[i, -1]) for i in range(N)]
    assert p["exit_agreement"] == pytest.approx(sum(agree) / N)
    nlls = [float(r.nll[i, depth[i] - 1]) for i in range(N - 3)]
    assert p["exit_perplexity"] == pytest.approx(math.exp(sum(nlls) / len(nlls)))
    assert sum(p["exit_histogram"]) == N


def test_a_rule_that_never_fires_is_the_full_model() -> None:
    r = _readings(2)
    costs = {"blocks": [1.0] * L, "head": 1.0, "readout": 1.0, "total": L + 1.0}
    curve = exit_curve(r, {"confidence": (1.0,), "entropy": (0.0,)}, costs)
    for kind in ("confidence", "entropy"):
        p = curve["rules"][kind][0]
        assert p["mean_exit_depth"] == L and p["exit_agreement"] == 1.0
        assert p["flops_saved"] == 0
        assert p["exit_perplexity"] == pytest.approx(curve["full_model"]["perplexity"])


@pytest.mark.parametrize(
    "rule",
    [
        ExitRule("confidence", 1.5),
        ExitRule("confidence", 0.0),
        ExitRule("entropy", -0.1),
        ExitRule("entropy", 99.0),
        ExitRule("settled", 0),
        ExitRule("settled", 2.5),
        ExitRule("settled", 6),
        ExitRule("confidence", math.nan),
        ExitRule("confidence", 0.5, min_depth=0),
    ],
)
def test_thresholds_out_of_range_are_refused(rule: ExitRule) -> None:
    with pytest.raises(DepthlensError):
        rule.check(n_layers=L, vocab=128)


def test_parse_thresholds() -> None:
    assert parse_thresholds("confidence", "0.5, 0.9") == (0.5, 0.9)
    assert parse_thresholds("settled", None)
    with pytest.raises(DepthlensError):
        parse_thresholds("entropy", "a,b")
