"""select_span: a user-facing error (not a bare ValueError) when no span has a distance."""

from __future__ import annotations

import math

import pytest

from depthlens.cut.select import select_span
from depthlens.errors import DepthlensError


def test_all_null_distances_raise_depthlens_error() -> None:
    angular: list[list[float | None]] = [[None, None] for _ in range(6)]
    with pytest.raises(DepthlensError, match="finite angular distance"):
        select_span(angular, 2)


def test_nan_distances_are_skipped_like_null() -> None:
    # Start 1 is NaN (would win under a naive min since NaN compares False); 3 is the real min.
    angular = [[0.0, 0.0], [0.1, math.nan], [0.1, 0.5], [0.1, 0.2], [0.1, 0.9], [0.1, None]]
    start, info = select_span(angular, 2)
    assert start == 3
    assert info["best_starts"][0] == [3, 0.2]


def test_all_nan_raise_too() -> None:
    angular = [[math.nan] for _ in range(4)]
    with pytest.raises(DepthlensError):
        select_span(angular, 1)
