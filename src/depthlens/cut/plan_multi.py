"""Plans of the multi-run methods: replaceme-multi, greedy-ls and beam-ls.

Each method is a chooser of the removed set, then one least-squares map per run fitted on
every calibration window (:func:`depthlens.cut.multi.fit_runs`): ``replaceme-multi`` takes
the removed set from ``blocks`` (any ascending set) or, without it, the ``n`` blocks of
lowest block influence (ShortGPT); ``greedy-ls`` / ``beam-ls`` choose it by loss-aware
search (:mod:`depthlens.cut.search`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from depthlens.cut.multi import MultiFit, check_removed, fit_runs, runs_of
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.request import (
    CutRequest,
    PlannedMethod,
    SelectContext,
    check_enough_tokens,
    resolve_n,
)
from depthlens.cut.search import SearchOptions, search_removed
from depthlens.cut.select import select_lowest
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings
from depthlens.metrics.catalog.residual import BLOCK_INFLUENCE
from depthlens.results import clean_json


@dataclasses.dataclass
class Chosen:
    """A chooser's answer: the removed set, why, and the search's own maps if it kept any."""

    removed: tuple[int, ...]
    selection: dict[str, Any]
    maps: Any = None  # None: fit the runs' maps on every calibration window


Chooser = Callable[[PlannedMethod, CutRequest, "int | None", dict[str, Any]], Chosen]


def plan_given_or_lowest(method: PlannedMethod, req: CutRequest) -> CutPlan:
    """replaceme-multi: the given ``blocks``, or the n blocks of lowest block influence."""
    return _plan_runs(method, req, _given_or_lowest)


def plan_searched(beam: int | None = None) -> Callable[[PlannedMethod, CutRequest], CutPlan]:
    """greedy-ls / beam-ls: the removed set by loss-aware search; ``beam`` fixes the width."""

    def plan(method: PlannedMethod, req: CutRequest) -> CutPlan:
        def choose(
            m: PlannedMethod, r: CutRequest, n: int | None, options: dict[str, Any]
        ) -> Chosen:
            return _searched(m, r, n, options, beam)

        return _plan_runs(method, req, choose)

    return plan


def _plan_runs(method: PlannedMethod, req: CutRequest, choose: Chooser) -> CutPlan:
    """Choose the removed set with ``choose`` and fit one LS map per run."""
    lm, windows, o = req.lm, req.windows, req.options
    check_enough_tokens(lm, windows)
    n = None if o.blocks is not None else resolve_n(lm.num_layers, o.n, o.ratio)
    t0 = time.perf_counter()
    options: dict[str, Any] = {"n": n, "multi_mode": o.multi_mode, **dataclasses.asdict(o.cal)}
    chosen = choose(method, req, n, options)
    removed, selection = chosen.removed, chosen.selection
    if runs_of(removed)[0][0] == 0:
        raise DepthlensError(
            f"block 0 is in the removed set {list(removed)}; the multi-run "
            "methods merge each run into the block before it: keep block 0"
        )
    if chosen.maps is not None:
        runs = [list(r) for r in runs_of(removed)]
        mode = "search maps (joint, cached bf16 states, no refit)"
        mf = MultiFit(chosen.maps, {"mode": mode, "runs": runs}, 0.0)
    else:
        mf = fit_runs(lm, windows, removed, o.cal, mode=o.multi_mode, progress=req.progress)
    cost = selection.get("cost")
    if isinstance(cost, dict):
        cost["final_fit_fe"] = mf.forward_equivalents
        cost["total_fe"] = cost["forward_equivalents"] + mf.forward_equivalents
    fit = {
        **mf.fit,
        "fit_forward_equivalents": mf.forward_equivalents,
        "seconds": time.perf_counter() - t0,
    }
    return CutPlan(
        envelope=plan_envelope(lm, windows, options),
        method=method.name,
        num_layers=lm.num_layers,
        removed=removed,
        merge_into=None,
        selection=clean_json(selection),
        fit=clean_json(fit),
        savings=cut_savings(lm, removed, windows.seq_len),
        merges=mf.merges,
    )


def _given_or_lowest(
    method: PlannedMethod, req: CutRequest, n: int | None, options: dict[str, Any]
) -> Chosen:
    blocks = req.options.blocks
    if blocks is not None:
        check_removed(blocks, req.lm.num_layers)
        return Chosen(tuple(blocks), {"why": f"removed set given: {list(blocks)}"})
    if n is None:
        raise DepthlensError(f"{method.name} needs --blocks or --remove N")
    # The n blocks of lowest block influence among 1..L−1 (block 0 has no block before it).
    ctx = SelectContext(
        req.lm,
        req.windows,
        1,
        calibration=req.options.cal,
        progress=req.progress,
        profile=req.profile,
    )
    values = list(ctx.selection_profile().metrics[BLOCK_INFLUENCE.name])
    values[0] = None  # keep block 0: its run would have no block to merge into
    removed, selection = select_lowest(values, n, BLOCK_INFLUENCE.name)
    selection["why"] += " among blocks 1..L-1 (ShortGPT), each run replaced by its LS map"
    return Chosen(removed, selection)


def _searched(
    method: PlannedMethod, req: CutRequest, n: int | None, options: dict[str, Any], beam: int | None
) -> Chosen:
    o = req.options
    if o.blocks is not None:
        raise DepthlensError(
            f"--blocks names the removed set itself; it goes with "
            f"--method replaceme-multi, not {method.name}"
        )
    if n is None:
        raise DepthlensError(f"{method.name} needs --remove N")
    sopts = o.search or SearchOptions()
    if beam is not None:
        sopts = dataclasses.replace(sopts, beam=beam)
    cal = o.cal
    sopts = dataclasses.replace(
        sopts,
        ridge=cal.ridge,
        batch_size=cal.batch_size,
        fit_include_first_token=cal.fit_include_first_token,
    )
    options.update({f"search_{k}": v for k, v in dataclasses.asdict(sopts).items()})
    removed, selection, maps_by_n = search_removed(
        req.lm, req.windows, n, sopts, progress=req.progress
    )
    keep_maps = o.search is not None and not o.search.refit
    return Chosen(removed, selection, maps_by_n[n] if keep_maps else None)
