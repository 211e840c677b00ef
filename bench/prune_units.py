"""units-ls rows of bench/prune_quality.py: blocks and sublayers at n blocks' FLOP share."""

from __future__ import annotations

import dataclasses
from typing import Any

from depthlens.cut import CutOptions, plan_cut
from depthlens.cut.search import SearchOptions
from depthlens.cut.units import Budget, normal_units, parse_unit, unit_text
from depthlens.evaluate.flops import flops_per_token


def flop_share(b: Any, n: int) -> float:
    """The share of per-token FLOPs (at --seq-len) of n average blocks."""
    fl = flops_per_token(b.lm, b.a.seq_len)
    return n * sum(fl["blocks"]) / len(fl["blocks"]) / fl["total"]


def plan_units(b: Any, cut: Any, n: int, search: SearchOptions, opts: Any) -> Any:
    """units-ls at n blocks' FLOP share: the prefix of one search to the largest n."""
    a = b.a
    multi = a.multi_mode
    if "units-ls" not in b.searches:
        big = max(int(x) for x in a.ns.split(","))
        budget = Budget("flops", flop_share(b, big), context=a.seq_len)
        sopts = dataclasses.replace(search, beam=1, rescore=a.rescore)
        copts = CutOptions(budget=budget, search=sopts, calibration=opts, multi_mode=multi)
        b.searches["units-ls"] = plan_cut(cut, b.calib, "units-ls", copts)
    full = b.searches["units-ls"]
    target = flop_share(b, n)
    trace = full.selection["trace"]
    k = next((i + 1 for i, t in enumerate(trace) if t["freed"] >= target - 1e-12), len(trace))
    units = normal_units(parse_unit(t["unit"]) for t in trace[:k])
    plan = plan_cut(
        cut, b.calib, "units-ls", CutOptions(units=units, calibration=opts, multi_mode=multi)
    )
    sel = {
        **full.selection,
        "trace": trace[:k],
        "units": [unit_text(u) for u in units],
        "freed_share": trace[k - 1]["freed"],
        "budget": {"kind": "flops", "value": target, "context": a.seq_len},
    }
    return dataclasses.replace(plan, selection=sel)
