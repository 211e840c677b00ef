"""The plan of ``units-ls``: blocks and sublayers chosen under a budget, maps refitted.

The search (:mod:`depthlens.cut.search_units`) gives the units; each run of removed blocks
then gets its least-squares map fitted on every calibration window with the removed
sublayers already removed (their output projections hooked to 0), so the maps see the
stream the cut model will compute.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from depthlens.capture.hooks import hooks
from depthlens.cut.multi import MultiFit, fit_runs, runs_of
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.request import CutRequest, PlannedMethod, check_enough_tokens
from depthlens.cut.search import SearchOptions
from depthlens.cut.search_units import search_units
from depthlens.cut.units import (
    KINDS,
    Budget,
    normal_units,
    removed_blocks,
    removed_sublayers,
    unit_text,
    units_savings,
    zero_output_hooks,
)
from depthlens.errors import DepthlensError
from depthlens.results import clean_json


def plan_units(method: PlannedMethod, req: CutRequest) -> CutPlan:
    """units-ls: search the units under ``req.options.budget``, then fit the block maps."""
    lm, windows, o = req.lm, req.windows, req.options
    budget = o.budget
    if o.units is not None:
        budget = budget if isinstance(budget, Budget) else Budget("flops", 0.5, windows.seq_len)
    elif not isinstance(budget, Budget):
        raise DepthlensError(
            f"{method.name} needs a budget: --budget-flops F, --budget-params P or "
            "--budget-speedup S (not --remove / --ratio)"
        )
    check_enough_tokens(lm, windows)
    t0 = time.perf_counter()
    timing = o.timing
    if budget.kind == "speedup" and timing is None:
        from depthlens.cut.unit_time import measure_unit_time

        timing = measure_unit_time(lm, budget.context, budget.mode)
    sopts = dataclasses.replace(
        o.search or SearchOptions(),
        ridge=o.cal.ridge,
        batch_size=o.cal.batch_size,
        fit_include_first_token=o.cal.fit_include_first_token,
    )
    if o.units is not None:
        units, selection, us = _given(req, o.units, budget)
    else:
        units, selection, us = search_units(
            lm, windows, budget, sopts, timing=timing, progress=req.progress
        )
    if timing is not None:
        selection["timing"] = timing.to_dict()
    blocks, subs = removed_blocks(units), removed_sublayers(units)
    mf = _fit_maps(req, blocks, subs, us, sopts)
    options: dict[str, Any] = {
        "budget": budget.to_dict() if o.units is None else None,
        "units": None if o.units is None else [unit_text(u) for u in units],
        "multi_mode": o.multi_mode,
        **{f"search_{k}": v for k, v in dataclasses.asdict(sopts).items()},
        **dataclasses.asdict(o.cal),
    }
    fit = {**mf.fit, "fit_forward_equivalents": mf.forward_equivalents}
    fit["seconds"] = time.perf_counter() - t0
    return CutPlan(
        envelope=plan_envelope(lm, windows, options),
        method=method.name,
        num_layers=lm.num_layers,
        removed=blocks,
        merge_into=None,
        selection=clean_json(selection),
        fit=clean_json(fit),
        savings=units_savings(lm, units, budget.context),
        merges=mf.merges,
        sublayers=subs,
    )


def _given(req: CutRequest, units: Any, budget: Budget) -> tuple[Any, dict[str, Any], None]:
    """The units named by the caller (``--units``), checked; no search."""
    given = normal_units(tuple(units))
    for kind, i in given:
        if kind not in KINDS or not 0 <= i < req.lm.num_layers:
            raise DepthlensError(f"unit {kind}:{i} is not in a {req.lm.num_layers}-block model")
    blocks = removed_blocks(given)
    subs = set(removed_sublayers(given))
    if len(blocks) > req.lm.num_layers - 2 or any(
        s < 1 or ("mlp", s - 1) in subs for s, _e in runs_of(blocks)
    ):
        raise DepthlensError(
            f"units {[unit_text(u) for u in given]}: each block run needs the block before "
            "it, with its MLP, to merge its map into, and two blocks must stay"
        )
    why = f"units given: {[unit_text(u) for u in given]}"
    return given, {"why": why, "units": [unit_text(u) for u in given]}, None


def _fit_maps(
    req: CutRequest, blocks: tuple[int, ...], subs: Any, us: Any, sopts: SearchOptions
) -> MultiFit:
    """One LS map per block run (none for a family without an MLP output projection)."""
    lm, o = req.lm, req.options
    if not blocks or lm.arch.mlp_out_proj is None:
        why = "no block runs" if not blocks else f"family '{lm.arch.family}' takes no map"
        return MultiFit((), {"mode": f"none ({why})"}, 0.0)
    if not sopts.refit and us is not None:
        maps = tuple((s - 1, us.cache.transform((s, e))) for s, e in runs_of(blocks))
        runs = [list(r) for r in runs_of(blocks)]
        return MultiFit(maps, {"mode": "search maps (joint, no refit)", "runs": runs}, 0.0)
    with hooks(zero_output_hooks(lm.model, lm.arch, subs)):
        return fit_runs(lm, req.windows, blocks, o.cal, mode=o.multi_mode, progress=req.progress)
