"""Data parallel without processes: two simulated ranks whose sums are combined by hand.

In-process twin of test_distributed.py (real gloo processes, marked e2e): each simulated
rank runs with ``rank_world`` patched to (rank, 2), so it takes its own rank::2 windows,
and the all-reduce is replaced by an exchange that combines the two ranks' float64 sums
(sum, or max where the field says so). Rank 1 runs first and leaves its sums; rank 0 then
combines them into its own, so rank 0's result is what a 2-process run computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

import depthlens.cut.calibrate as calibrate
import depthlens.profiling.run as run
from depthlens.cut import CalibrationOptions
from depthlens.metrics.accumulate import Accumulator
from depthlens.profiling import ProfileOptions, profile

REL = 1e-9  # as in test_distributed.py: only the float64 summation order differs


class TwoRanks:
    """Patches rank_world and Accumulator.all_reduce to simulate a world of 2."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rank = 0
        self.left: list[dict[str, torch.Tensor]] = []  # rank 1's sums, in all-reduce order
        self.reduced = 0
        world = lambda: (self.rank, 2)  # noqa: E731
        monkeypatch.setattr(run, "rank_world", world)
        monkeypatch.setattr(calibrate, "rank_world", world)
        monkeypatch.setattr(Accumulator, "all_reduce", self._all_reduce(self))

    @staticmethod
    def _all_reduce(ranks: TwoRanks) -> Callable[[Accumulator], None]:
        def all_reduce(acc: Accumulator) -> None:
            leaves = list(acc._leaves())
            if ranks.rank == 1:
                ranks.left.append({name: buf.clone() for name, buf, _ in leaves})
                return
            other = ranks.left[ranks.reduced]
            ranks.reduced += 1
            for name, buf, how in leaves:
                buf.copy_(torch.maximum(buf, other[name]) if how == "max" else buf + other[name])

        return all_reduce

    def run(self, fn: Callable[[], Any]) -> Any:
        """``fn`` on rank 1, then on rank 0; rank 0's (combined) result."""
        self.rank = 1
        fn()
        self.rank = 0
        return fn()


def _close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_two_simulated_ranks_profile_like_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = ProfileOptions(batch_size=1, lens_kernel="eager", lens_tokens=40)
    single = profile(wrap_tiny("llama"), random_windows(n=7), opts, progress=False)
    ranks = TwoRanks(monkeypatch)
    two = ranks.run(lambda: profile(wrap_tiny("llama"), random_windows(n=7), opts,
                                    progress=False))
    assert ranks.reduced == 1
    # Equal token counts: each window was taken by exactly one rank (both ranks taking
    # all 7 would double them, neither taking some would lose them).
    _close(two.tokens, single.tokens)
    _close(two.metrics, single.metrics)
    _close(two.angular_distance, single.angular_distance)
    _close(two.prediction_depth, single.prediction_depth)


def test_two_simulated_ranks_calibrate_like_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    cal = CalibrationOptions(batch_size=1)
    single, _ = calibrate.stream_span_sums(wrap_tiny("llama"), random_windows(n=7), 1, 2, cal)
    ranks = TwoRanks(monkeypatch)
    two, _ = ranks.run(
        lambda: calibrate.stream_span_sums(wrap_tiny("llama"), random_windows(n=7), 1, 2, cal)
    )
    assert ranks.reduced == 1
    want, got = single.state_dict(), two.state_dict()
    assert set(want) == set(got)
    for name, ref in want.items():  # A = Σ MᵀM, B = Σ MᵀZ, ...: float64 sums
        scale = float(ref.abs().max()) or 1.0
        assert float((got[name] - ref).abs().max()) / scale <= REL, name
    shard = ranks.left[0]  # rank 1's sums alone differ from the total: it had other rows
    assert any(not torch.equal(shard[n], want[n]) for n in want)
