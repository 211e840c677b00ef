"""The budget options of ``depthlens plan`` / ``prune`` for ``--method units-ls``."""

from __future__ import annotations

import argparse
from typing import Any


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """--budget-flops | --budget-params | --budget-speedup, --context, --speed-mode, --units."""
    g = p.add_argument_group("budget (units-ls: blocks, attention or MLP sublayers)")
    how = g.add_mutually_exclusive_group()
    how.add_argument(
        "--budget-flops",
        type=float,
        metavar="F",
        help="remove this fraction of per-token FLOPs at --context (e.g. 0.27)",
    )
    how.add_argument(
        "--budget-params", type=float, metavar="P", help="remove this fraction of parameters"
    )
    how.add_argument(
        "--budget-speedup",
        type=float,
        metavar="S",
        help="reach this measured speed-up (--speed-mode at --context; e.g. 1.25)",
    )
    how.add_argument(
        "--units",
        metavar="U,..",
        help="the units themselves, e.g. attn:3,mlp:7,block:12 (no search)",
    )
    g.add_argument(
        "--context",
        type=int,
        default=None,
        help="context length the budget is stated at (default: the calibration window)",
    )
    g.add_argument(
        "--speed-mode",
        default="prefill",
        choices=("prefill", "decode"),
        help="what --budget-speedup times: a prefill of --context tokens, or one decode step "
        "with a KV cache of --context tokens (its reads count) (prefill)",
    )
    g.add_argument(
        "--rescore", type=int, default=6, help="units re-scored per search step after the first (6)"
    )


def budget_options(args: argparse.Namespace, seq_len: int) -> dict[str, Any]:
    """CutOptions fields from the budget flags: {"budget": Budget | None, "units": … | None}."""
    from depthlens.cut.units import Budget, parse_unit

    context = args.context or seq_len
    budget = None
    for kind in ("flops", "params", "speedup"):
        value = getattr(args, f"budget_{kind}", None)
        if value is not None:
            budget = Budget(kind, value, context, args.speed_mode)
            budget.check()
    units = None
    if getattr(args, "units", None):
        units = tuple(parse_unit(u.strip()) for u in args.units.split(","))
    return {"budget": budget, "units": units}


def check_budget_args(args: argparse.Namespace) -> None:
    """A budget goes with units-ls, and units-ls needs one (before any model is loaded)."""
    from depthlens.cut import CUT_METHODS
    from depthlens.errors import DepthlensError

    has = any(
        getattr(args, k, None) is not None
        for k in ("budget_flops", "budget_params", "budget_speedup", "units")
    )
    takers = " or ".join(m.name for m in CUT_METHODS.values() if m.takes_budget)
    budgeted = CUT_METHODS[args.method].takes_budget
    if has and not budgeted:
        raise DepthlensError(f"--budget-* and --units go with --method {takers}, not {args.method}")
    if budgeted and not has and not getattr(args, "plan", None):
        raise DepthlensError(
            f"--method {args.method} needs --budget-flops F, --budget-params P, "
            "--budget-speedup S or --units U,.."
        )
    budget_options(args, seq_len=1)  # values and unit names, before the model loads
    if args.rescore < 0:
        raise DepthlensError(f"--rescore must be >= 0, got {args.rescore}")
