"""Cut methods as records: one :class:`CutMethod` per method, in :data:`CUT_METHODS`.

Plan, preview, apply, save, the CLI's ``--method`` choices (with did-you-mean) and the plan
JSON all read this table, so a new method is one :func:`register_cut_method` call (see
docs/ADDING.md). A record carries its behaviour: ``plan(method, request) -> CutPlan``.

- A selection rule gives ``select(context) -> (removed blocks, why)`` and keeps the default
  ``plan`` (:func:`~depthlens.cut.plan_span.plan_drop`): the blocks are removed, nothing
  replaces them.
- ``span`` methods (:func:`~depthlens.cut.plan_span.plan_span`): one contiguous span chosen
  by angular distance, replaced by ReplaceMe's least-squares (``ls``) or cosine (``cos``)
  map, or by nothing (``none``).
- ``multi`` methods (:mod:`depthlens.cut.plan_multi`): any set of runs, one least-squares map
  per run.
- ``units`` (:mod:`depthlens.cut.plan_units`): blocks and attention / MLP sublayers under a
  budget (``CutOptions.budget``), one least-squares map per block run.

A method with its own kind of cut gives its own ``plan`` (any function of the
:class:`~depthlens.cut.request.CutRequest` that returns a
:class:`~depthlens.cut.plan.CutPlan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from depthlens.cut.plan import CutPlan
from depthlens.cut.plan_multi import plan_given_or_lowest, plan_searched
from depthlens.cut.plan_span import plan_drop, plan_span
from depthlens.cut.plan_units import plan_units
from depthlens.cut.request import CutOptions, CutRequest, SelectContext, Selection
from depthlens.errors import DepthlensError
from depthlens.registry import Registry

__all__ = [
    "CUT_METHODS",
    "CutMethod",
    "CutOptions",
    "CutRequest",
    "SelectContext",
    "Selection",
    "get_cut_method",
    "method_names",
    "register_cut_method",
]


@dataclass(frozen=True)
class CutMethod:
    """One depth-pruning method: what it is, where it comes from and how it plans."""

    name: str
    description: str
    source: str  # the paper (or "baseline")
    select: Callable[[SelectContext], Selection] | None = None  # for the default plan_drop
    replacement: Literal["none", "ls", "cos"] = "none"  # what stands in for removed blocks
    kind: str = "drop"  # a label for docs and listings: drop | span | multi | …
    plan: Callable[[CutMethod, CutRequest], CutPlan] = plan_drop
    takes_blocks: bool = False  # accepts --blocks (the removed set itself)
    takes_budget: bool = False  # plans under --budget-* / --units instead of --remove N
    # True: a family without an MLP output projection is cut without maps, not refused
    maps_optional: bool = False

    def make_plan(self, req: CutRequest) -> CutPlan:
        """The plan of this method for ``req``."""
        return self.plan(self, req)


def _check(method: CutMethod) -> None:
    if method.plan is plan_drop and method.select is None:
        raise RuntimeError(f"cut method {method.name!r}: a selection rule needs select()")


CUT_METHODS: Registry[CutMethod] = Registry(
    "--method",
    check=_check,
    columns=(
        ("method", lambda m: f"`{m.name}`"),
        ("kind", lambda m: m.kind),
        ("replacement", lambda m: m.replacement),
        ("what it removes", lambda m: m.description),
        ("source", lambda m: m.source),
    ),
)


def register_cut_method(method: CutMethod) -> CutMethod:
    """Add ``method`` to the table (a second, different method of the same name is an error)."""
    return CUT_METHODS.register(method)


def method_names() -> list[str]:
    """Every registered method, in registration order."""
    return CUT_METHODS.names()


def get_cut_method(name: str) -> CutMethod:
    """The method called ``name``, or a one-line error with a did-you-mean."""
    return CUT_METHODS.get(name)


def _block_influence(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_lowest
    from depthlens.metrics.catalog.residual import BLOCK_INFLUENCE

    prof = ctx.selection_profile()
    name = BLOCK_INFLUENCE.name
    return select_lowest(prof.metrics[name], ctx.n, name)


def _greedy_loss(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_greedy_loss
    from depthlens.data.windows import TokenWindows

    k = ctx.greedy_windows
    if k < 1:
        raise DepthlensError(f"--greedy-windows must be at least 1, got {k}")
    w = ctx.windows
    subset = {**w.identity, "subset": f"first {k} windows"}
    sub = TokenWindows(w.input_ids[:k], w.attention_mask[:k], subset)
    ctx.options.update(greedy_windows=len(sub))
    bs = ctx.calibration.batch_size
    return select_greedy_loss(ctx.lm, sub, ctx.n, batch_size=bs, progress=ctx.progress)


def _last(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_last

    return select_last(ctx.num_layers, ctx.n)


def _random(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_random

    return select_random(ctx.num_layers, ctx.n, ctx.seed)


_REPLACEME = "Shopkhoev et al. 2025, ReplaceMe (arXiv:2505.02819)"
_SEARCH = "depthlens (loss-aware ReplaceMe search)"
_SPAN = "cheapest angular span"
for _m in (
    CutMethod(
        "replaceme-ls",
        f"{_SPAN}, replaced by a least-squares map",
        _REPLACEME,
        replacement="ls",
        kind="span",
        plan=plan_span,
    ),
    CutMethod(
        "replaceme-cos",
        f"{_SPAN}, replaced by a cosine-fitted map",
        _REPLACEME,
        replacement="cos",
        kind="span",
        plan=plan_span,
    ),
    CutMethod(
        "angular",
        f"{_SPAN}, removed",
        "Gromov et al. 2024 (arXiv:2403.17887)",
        kind="span",
        plan=plan_span,
    ),
    CutMethod(
        "block-influence",
        "the n blocks of lowest block influence",
        "Men et al. 2024, ShortGPT (arXiv:2403.03853)",
        _block_influence,
    ),
    CutMethod(
        "greedy-loss",
        "n rounds, each removing the block that raises the loss least",
        "Song et al. 2024, SLEB",
        _greedy_loss,
    ),
    CutMethod("last", "the last n blocks before the final one", "baseline", _last),
    CutMethod("random", "a seeded random set of n blocks", "baseline", _random),
    CutMethod(
        "replaceme-multi",
        "given runs of blocks, one least-squares map per run",
        _REPLACEME + ", extended to several runs",
        replacement="ls",
        kind="multi",
        plan=plan_given_or_lowest,
        takes_blocks=True,
    ),
    CutMethod(
        "greedy-ls",
        "one block at a time by the loss after least-squares refit",
        _SEARCH,
        replacement="ls",
        kind="multi",
        plan=plan_searched(beam=1),
    ),
    CutMethod(
        "beam-ls",
        "beam search over runs by the loss after least-squares refit",
        _SEARCH,
        replacement="ls",
        kind="multi",
        plan=plan_searched(),
    ),
    CutMethod(
        "units-ls",
        "blocks, attention or MLP sublayers, greedy by loss per cost, under a FLOP, "
        "parameter or speed-up budget",
        _SEARCH + ", at sublayer granularity",
        replacement="ls",
        kind="units",
        plan=plan_units,
        takes_budget=True,
        maps_optional=True,
    ),
):
    register_cut_method(_m)
