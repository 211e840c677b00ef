"""The plan of ``units-ls``: blocks and sublayers chosen under a budget, maps refitted.

The search (:mod:`depthlens.cut.search_units`) gives the units; each run of removed blocks
then gets its least-squares map fitted on every calibration window with the removed
sublayers already removed (their output projections hooked to 0), so the maps see the
stream the cut model will compute.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from depthlens.capture.hooks import hooks
from depthlens.cut.multi import MultiFit, fit_runs, runs_of
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.request import CutRequest, check_enough_tokens
from depthlens.cut.search import SearchOptions
from depthlens.cut.search_units import search_units
from depthlens.cut.units import (
    Budget,
    removed_blocks,
    removed_sublayers,
    units_savings,
    zero_output_hooks,
)
from depthlens.errors import DepthlensError
from depthlens.results import clean_json

if TYPE_CHECKING:
    from depthlens.cut.methods import CutMethod


def plan_units(method: CutMethod, req: CutRequest) -> CutPlan:
    """units-ls: search the units under ``req.options.budget``, then fit the block maps."""
    lm, windows, o = req.lm, req.windows, req.options
    budget = o.budget
    if not isinstance(budget, Budget):
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
    units, selection, us = search_units(
        lm, windows, budget, sopts, timing=timing, progress=req.progress
    )
    if timing is not None:
        selection["timing"] = timing.to_dict()
    blocks, subs = removed_blocks(units), removed_sublayers(units)
    mf = _fit_maps(req, blocks, subs, us, sopts)
    options: dict[str, Any] = {
        "budget": budget.to_dict(),
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


def _fit_maps(
    req: CutRequest, blocks: tuple[int, ...], subs: Any, us: Any, sopts: SearchOptions
) -> MultiFit:
    """One LS map per block run (none for a family without an MLP output projection)."""
    lm, o = req.lm, req.options
    if not blocks or lm.arch.mlp_out_proj is None:
        why = "no block runs" if not blocks else f"family '{lm.arch.family}' takes no map"
        return MultiFit((), {"mode": f"none ({why})"}, 0.0)
    if not sopts.refit:
        maps = tuple((s - 1, us.cache.transform((s, e))) for s, e in runs_of(blocks))
        runs = [list(r) for r in runs_of(blocks)]
        return MultiFit(maps, {"mode": "search maps (joint, no refit)", "runs": runs}, 0.0)
    with hooks(zero_output_hooks(lm.model, lm.arch, subs)):
        return fit_runs(lm, req.windows, blocks, o.cal, mode=o.multi_mode, progress=req.progress)
