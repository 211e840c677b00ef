"""Cut methods as records: one :class:`CutMethod` per method, found by name.

Plan, preview, apply, save, the CLI's ``--method`` choices (with did-you-mean) and the plan
JSON all read this table, so a new selection rule is one :func:`register_cut_method`
call (see docs/ADDING.md). ``kind`` says how the planner treats the method:

- ``drop``: ``select(context)`` returns the removed blocks; nothing replaces them.
- ``span``: one contiguous span chosen by angular distance, then replaced by ReplaceMe's
  least-squares (``ls``) or cosine (``cos``) map, or by nothing (``none``).
- ``multi``: any set of runs, one least-squares map per run (:mod:`depthlens.cut.plan_multi`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from depthlens.errors import DepthlensError

Selection = tuple[tuple[int, ...], dict[str, Any]]


@dataclass
class SelectContext:
    """What a selection rule may read: the model, the calibration text and the options."""

    lm: Any  # LoadedModel
    windows: Any  # TokenWindows
    n: int
    seed: int = 0
    calibration: Any = None  # CalibrationOptions
    last_token_only: bool = False
    greedy_windows: int = 4
    progress: bool = False
    profile: Any = None  # a Profile of lm on windows to reuse, if the caller has one
    options: dict[str, Any] = field(default_factory=dict)  # written into the plan

    @property
    def num_layers(self) -> int:
        """Depth of the model being cut."""
        return int(self.lm.num_layers)

    def selection_profile(self) -> Any:
        """A residual profile with angular distances up to n (the given one if it has them)."""
        from depthlens.profiling import ProfileOptions, profile
        from depthlens.profiling.result import check_profile_matches

        prof = self.profile
        if prof is not None:
            check_profile_matches(prof, self.lm)
        if prof is None or len(prof.angular_distance[0]) < self.n:
            opts = self.calibration
            popts = ProfileOptions(lens=False, n_max=self.n, last_token_only=self.last_token_only,
                                   include_first_token=opts.include_first_token,
                                   batch_size=opts.batch_size)  # fmt: skip
            prof = profile(self.lm, self.windows, popts, progress=self.progress)
            self.profile = prof
        self.options.update(last_token_only=self.last_token_only,
                            include_first_token=self.calibration.include_first_token)  # fmt: skip
        return prof


@dataclass(frozen=True)
class CutMethod:
    """One depth-pruning method."""

    name: str
    description: str
    source: str  # the paper (or "baseline")
    select: Callable[[SelectContext], Selection] | None = None  # kind "drop"
    replacement: Literal["none", "ls", "cos"] = "none"
    kind: Literal["drop", "span", "multi"] = "drop"


CUT_METHODS: dict[str, CutMethod] = {}


def register_cut_method(method: CutMethod) -> CutMethod:
    """Add ``method`` to the table (a second, different method of the same name is an error)."""
    old = CUT_METHODS.get(method.name)
    if old is not None and old != method:
        raise RuntimeError(f"cut method {method.name!r} is registered twice")
    if method.kind == "drop" and method.select is None:
        raise RuntimeError(f"cut method {method.name!r}: a 'drop' method needs select()")
    CUT_METHODS[method.name] = method
    return method


def method_names() -> list[str]:
    """Every registered method, in registration order."""
    return list(CUT_METHODS)


def get_cut_method(name: str) -> CutMethod:
    """The method called ``name``, or a one-line error with a did-you-mean."""
    if name not in CUT_METHODS:
        from depthlens.metrics.registry import unknown_choice

        raise DepthlensError(unknown_choice("--method", name, method_names()))
    return CUT_METHODS[name]


def _block_influence(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_lowest

    prof = ctx.selection_profile()
    return select_lowest(prof.metrics["block_influence"], ctx.n, "block_influence")


def _greedy_loss(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_greedy_loss
    from depthlens.data.windows import TokenWindows

    k = ctx.greedy_windows
    if k < 1:
        raise DepthlensError(f"--greedy-windows must be at least 1, got {k}")
    w = ctx.windows
    sub = TokenWindows(w.input_ids[:k], w.attention_mask[:k],
                       {**w.identity, "subset": f"first {k} windows"})  # fmt: skip
    ctx.options.update(greedy_windows=len(sub))
    return select_greedy_loss(ctx.lm, sub, ctx.n, batch_size=ctx.calibration.batch_size,
                              progress=ctx.progress)  # fmt: skip


def _last(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_last

    return select_last(ctx.num_layers, ctx.n)


def _random(ctx: SelectContext) -> Selection:
    from depthlens.cut.select import select_random

    return select_random(ctx.num_layers, ctx.n, ctx.seed)


_REPLACEME = "Shopkhoev et al. 2025, ReplaceMe (arXiv:2505.02819)"
for _m in (
    CutMethod("replaceme-ls", "cheapest angular span, replaced by a least-squares map",
              _REPLACEME, replacement="ls", kind="span"),
    CutMethod("replaceme-cos", "cheapest angular span, replaced by a cosine-fitted map",
              _REPLACEME, replacement="cos", kind="span"),
    CutMethod("angular", "cheapest angular span, removed",
              "Gromov et al. 2024 (arXiv:2403.17887)", kind="span"),
    CutMethod("block-influence", "the n blocks of lowest block influence",
              "Men et al. 2024, ShortGPT (arXiv:2403.03853)", _block_influence),
    CutMethod("greedy-loss", "n rounds, each removing the block that raises the loss least",
              "Song et al. 2024, SLEB", _greedy_loss),
    CutMethod("last", "the last n blocks before the final one", "baseline", _last),
    CutMethod("random", "a seeded random set of n blocks", "baseline", _random),
    CutMethod("replaceme-multi", "given runs of blocks, one least-squares map per run",
              _REPLACEME + ", extended to several runs", replacement="ls", kind="multi"),
    CutMethod("greedy-ls", "one block at a time by the loss after least-squares refit",
              "depthlens (loss-aware ReplaceMe search)", replacement="ls", kind="multi"),
    CutMethod("beam-ls", "beam search over runs by the loss after least-squares refit",
              "depthlens (loss-aware ReplaceMe search)", replacement="ls", kind="multi"),
):
    register_cut_method(_m)
