"""Speed ratios people can trust: interleaved runs, every run kept, interval and verdict."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import pytest
import torch
from conftest import wrap_tiny

import depthlens.evaluate.speed as speed
from depthlens.errors import DepthlensError
from depthlens.evaluate.speed import (
    bootstrap_median_ci,
    interleaved_speed,
    ratio_stats,
    verdict,
)


@pytest.mark.parametrize(
    ("ci", "ideal", "want"),
    [
        ((0.9, 1.2), 1.12, "no measurable difference"),
        ((1.0, 1.05), 1.12, "no measurable difference"),  # 1 on the edge counts as inside
        ((1.03, 1.10), 1.12, "speed-up"),
        ((1.05, 1.30), 1.12, "speed-up"),  # the interval reaches the ideal: consistent
        ((1.5, 2.1), 1.12, "above ideal: suspicious"),  # the "×1.96 of an ideal ×1.12" case
        ((0.4, 0.6), 1.12, "slow-down"),
        ((1.5, 2.1), None, "speed-up"),  # no ideal given: nothing to be suspicious of
    ],
)
def test_verdict(ci: tuple[float, float], ideal: float | None, want: str) -> None:
    assert verdict(ci, ideal) == want


def test_bootstrap_interval_is_seeded_and_brackets_the_median() -> None:
    xs = [1.0, 1.1, 0.9, 1.3, 1.05, 0.95, 1.2, 1.15]
    a, b = bootstrap_median_ci(xs, seed=3), bootstrap_median_ci(xs, seed=3)
    assert a == b  # reproducible
    assert min(xs) <= a[0] <= statistics.median(xs) <= a[1] <= max(xs)
    # Naive check of the quantile rule against torch's (linear interpolation).
    t = torch.tensor(xs, dtype=torch.float64)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert speed._quantile(xs, q) == pytest.approx(float(torch.quantile(t, q)))


def test_ratio_stats_are_paired_per_round() -> None:
    base = [2.0, 4.0, 2.0, 4.0, 2.0]  # a noisy machine: every other round is slow for both
    other = [1.0, 2.0, 1.0, 2.0, 1.0]
    s = ratio_stats(base, other, ideal=3.0, seed=0)
    # Paired: every round is exactly ×2, so the interval is a point.
    assert s.ratios == (2.0,) * 5 and s.median == 2.0 and s.ci95 == (2.0, 2.0)
    assert s.iqr == (2.0, 2.0) and s.verdict == "speed-up"
    assert "×2.00" in s.describe() and "speed-up" in s.describe()


def _fake_runs(monkeypatch: pytest.MonkeyPatch, times: dict[str, list[tuple[float, float]]]):
    """Replace the timed run by scripted times; record every call (model ref, input ids)."""
    calls: list[tuple[str, torch.Tensor]] = []
    its = {k: iter(v) for k, v in times.items()}

    def one_run(lm: Any, ids: torch.Tensor, decode_tokens: int) -> tuple[float, float]:
        calls.append((lm.ref, ids.clone()))
        return next(its[lm.ref])

    monkeypatch.setattr(speed, "_one_run", one_run)
    return calls


def test_interleaved_order_same_inputs_every_run_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = wrap_tiny("llama"), wrap_tiny("llama")
    b.ref = "tiny-cut"
    noise = itertools.cycle([1.0, 1.3, 0.8, 1.1])
    ta = [(0.2 * (n := next(noise)), 0.4 * n) for _ in range(8)]
    tb = [(0.1 * (n := next(noise)), 0.4 * n) for _ in range(8)]
    calls = _fake_runs(monkeypatch, {"tiny-llama": ta, "tiny-cut": tb})
    threads_before = torch.get_num_threads()
    res = interleaved_speed(
        [a, b],
        prompt_len=8,
        batch=2,
        decode_tokens=4,
        rounds=6,
        warmup=2,
        seed=0,
        threads=1,
        ideals=[1.0, 1.5],
    )
    assert torch.get_num_threads() == threads_before  # pinned only while measuring
    assert res.options["threads"] == 1 and res.options["warmup"] == 2
    # A B A B …: 2 warm-up rounds then 6 timed rounds, strictly alternating.
    assert [c[0] for c in calls] == ["tiny-llama", "tiny-cut"] * 8
    assert all(torch.equal(c[1], calls[0][1]) for c in calls)  # identical inputs
    ma, mb = res.models
    assert ma.prefill_s == tuple(t[0] for t in ta[2:])
    assert mb.decode_s == tuple(t[1] for t in tb[2:])
    assert ma.order == (0, 2, 4, 6, 8, 10) and mb.order == (1, 3, 5, 7, 9, 11)
    naive = [x[0] / y[0] for x, y in zip(ta[2:], tb[2:], strict=True)]
    assert res.prefill[0] is None and res.prefill[1] is not None
    assert res.prefill[1].ratios == pytest.approx(naive)
    assert res.prefill[1].median == pytest.approx(statistics.median(naive))
    assert ma.prefill_tok_s == pytest.approx(statistics.median(16 / t[0] for t in ta[2:]))
    assert res.prefill[1].verdict == "above ideal: suspicious"  # ×~2 against an ideal ×1.5
    assert res.decode[1] is not None and res.decode[1].verdict == "no measurable difference"
    d = res.to_dict()
    assert len(d["models"][1]["prefill_s"]) == 6 and d["prefill"][1]["ci95"]


def test_interleaved_real_tiny_models_and_bad_options() -> None:
    a = wrap_tiny("llama")
    res = interleaved_speed(
        [a, wrap_tiny("llama")],
        prompt_len=4,
        batch=1,
        decode_tokens=2,
        rounds=3,
        warmup=1,
        seed=0,
        threads=1,
    )
    assert len(res.models[0].prefill_s) == 3 and all(t > 0 for t in res.models[1].decode_s)
    assert res.prefill[1] is not None and res.prefill[1].ideal == pytest.approx(1.0)
    with pytest.raises(DepthlensError, match="rounds must be at least 1"):
        interleaved_speed(
            [a], prompt_len=4, batch=1, decode_tokens=2, rounds=0, warmup=0, seed=0, threads=1
        )
    with pytest.raises(DepthlensError, match="warmup must be at least 0"):
        interleaved_speed(
            [a], prompt_len=4, batch=1, decode_tokens=2, rounds=1, warmup=-1, seed=0, threads=1
        )


def test_compare_records_every_run_and_states_the_verdict() -> None:
    from conftest import random_windows

    from depthlens.evaluate.compare import compare, compare_table

    a, b = wrap_tiny("llama"), wrap_tiny("llama")
    w = random_windows(n=2, seq_len=8)
    res = compare(
        [("orig", a), ("same", b)],
        w,
        batch_size=2,
        speed_options={"prompt_len": 4, "decode_tokens": 2, "rounds": 4, "warmup": 1, "threads": 1},
    )
    assert res.speed is not None
    runs = res.speed.models
    assert [len(m.prefill_s) for m in runs] == [4, 4] and res.speed.options["rounds"] == 4
    row = res.models[1]
    assert row.prefill_ci95 is not None and row.prefill_speedup is not None
    lo, hi = row.prefill_ci95
    assert lo <= row.prefill_speedup <= hi
    assert row.prefill_verdict in speed.VERDICTS and res.models[0].prefill_verdict == "baseline"
    head, rows = compare_table(res)
    cell = rows[1][head.index("prefill ×, 95% CI, verdict")]
    assert f"[{lo:.2f}, {hi:.2f}]" in cell and row.prefill_verdict in cell
    assert "% of" not in " ".join(map(str, rows[1]))


def test_report_caption_states_interval_and_verdict() -> None:
    from depthlens.evaluate.compare import CompareResult
    from depthlens.report import captions as cap
    from depthlens.report.inputs import _compare_rows

    common = {"fingerprint": "0" * 16, "nll": 3.0, "n_tokens": 100, "flops_per_token": 1e6}
    orig = {"label": "orig", "ref": "orig", "method": None, "removed": [], "num_layers": 30}
    orig.update(ppl=20.0, ppl_ratio=1.0, ideal_speedup=1.0, prefill_speedup=1.0)
    cut = {
        "label": "cut",
        "ref": "cut",
        "method": "replaceme-ls",
        "removed": [20, 21, 22, 23],
        "num_layers": 26,
        "ppl": 27.0,
        "ppl_ratio": 1.35,
        "prefill_speedup": 1.96,
        "prefill_ci95": [1.4, 2.3],
        "prefill_verdict": "above ideal: suspicious",
        "decode_speedup": 0.98,
        "decode_ci95": [0.7, 1.3],
        "decode_verdict": "no measurable difference",
        "ideal_speedup": 1.12,
    }
    res = {"kind": "depthlens.compare", "models": [{**common, **orig}, {**common, **cut}]}
    rows = _compare_rows(CompareResult.from_dict(res))
    s = cap.speed_caption(rows)
    assert "×1.96 (95% CI 1.40 to 2.30: above ideal: suspicious)" in s
    assert "decode ×0.98 (95% CI 0.70 to 1.30: no measurable difference)" in s
    assert "175%" not in s and "% of the ideal" not in s
