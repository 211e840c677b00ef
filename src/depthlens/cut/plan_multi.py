"""Plans of the multi-run methods: replaceme-multi, greedy-ls and beam-ls.

``replaceme-multi`` takes the removed set from ``blocks`` (any ascending set) or, without
it, the ``n`` blocks of lowest block influence (ShortGPT); ``greedy-ls`` / ``beam-ls`` choose
it by loss-aware search (:mod:`depthlens.cut.search`). All three then fit one least-squares
map per run on every calibration window (:func:`depthlens.cut.multi.fit_runs`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from depthlens.cut.calibrate import CalibrationOptions
from depthlens.cut.multi import MultiFit, check_removed, fit_runs, runs_of
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.search import SearchOptions, search_removed
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings
from depthlens.models.loading import LoadedModel
from depthlens.results import clean_json


def plan_multi(
    lm: LoadedModel,
    windows: TokenWindows,
    *,
    method: str,
    n: int | None,
    calibration: CalibrationOptions,
    search: SearchOptions | None = None,
    blocks: tuple[int, ...] | None = None,
    mode: str = "sequential",
    progress: bool = False,
    profile: Any = None,
) -> CutPlan:
    """Choose the removed set for ``method`` and fit one LS map per run."""
    t0 = time.perf_counter()
    options: dict[str, Any] = {"n": n, "multi_mode": mode, **dataclasses.asdict(calibration)}
    maps: Any = ()
    if blocks is not None:
        if method != "replaceme-multi":
            raise DepthlensError(f"--blocks names the removed set itself; it goes with "
                                 f"--method replaceme-multi, not {method}")  # fmt: skip
        check_removed(blocks, lm.num_layers)
        removed = tuple(blocks)
        selection: dict[str, Any] = {"why": f"removed set given: {list(removed)}"}
    elif method == "replaceme-multi":
        if n is None:
            raise DepthlensError("replaceme-multi needs --blocks or --remove N")
        removed, selection = _lowest_influence(lm, windows, n, calibration, profile, progress)
    else:
        if n is None:
            raise DepthlensError(f"{method} needs --remove N")
        sopts = search or SearchOptions()
        if method == "greedy-ls":
            sopts = dataclasses.replace(sopts, beam=1)
        sopts = dataclasses.replace(sopts, ridge=calibration.ridge,
                                    batch_size=calibration.batch_size,
                                    fit_include_first_token=calibration.fit_include_first_token)
        options.update({f"search_{k}": v for k, v in dataclasses.asdict(sopts).items()})
        removed, selection, maps_by_n = search_removed(lm, windows, n, sopts, progress=progress)
        maps = maps_by_n[n]
    if runs_of(removed)[0][0] == 0:
        raise DepthlensError(f"block 0 is in the removed set {list(removed)}; the multi-run "
                             "methods merge each run into the block before it: keep block 0")
    if search is not None and not search.refit and method != "replaceme-multi":
        mf = MultiFit(maps, {"mode": "search maps (joint, cached bf16 states, no refit)",
                             "runs": [list(r) for r in runs_of(removed)]}, 0.0)  # fmt: skip
    else:
        mf = fit_runs(lm, windows, removed, calibration, mode=mode, progress=progress)
    cost = selection.get("cost")
    if isinstance(cost, dict):
        cost["final_fit_fe"] = mf.forward_equivalents
        cost["total_fe"] = cost["forward_equivalents"] + mf.forward_equivalents
    fit = {**mf.fit, "fit_forward_equivalents": mf.forward_equivalents,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    return CutPlan(
        envelope=plan_envelope(lm, windows, options), method=method,
        num_layers=lm.num_layers, removed=removed, merge_into=None,
        selection=clean_json(selection), fit=clean_json(fit),
        savings=cut_savings(lm, removed, windows.seq_len), merges=mf.merges,
    )  # fmt: skip


def _lowest_influence(lm: LoadedModel, windows: TokenWindows, n: int,
                      opts: CalibrationOptions, profile: Any,
                      progress: bool) -> tuple[tuple[int, ...], dict[str, Any]]:  # fmt: skip
    """The n blocks of lowest block influence among 1..L−1 (block 0 has no block before it)."""
    from depthlens.cut.methods import SelectContext
    from depthlens.cut.select import select_lowest

    prof = SelectContext(lm, windows, 1, calibration=opts, progress=progress,
                         profile=profile).selection_profile()
    values = list(prof.metrics["block_influence"])
    values[0] = None  # keep block 0: its run would have no block to merge into
    removed, selection = select_lowest(values, n, "block_influence")
    selection["why"] += " among blocks 1..L-1 (ShortGPT), each run replaced by its LS map"
    return removed, selection
