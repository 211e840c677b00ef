"""Loss-aware choice of blocks and sublayers under a budget (``units-ls``).

Greedy by loss per unit of cost: each step adds the unit (a block, an attention sublayer
or an MLP sublayer; :mod:`depthlens.cut.units`) whose removal raises KL(p_orig ‖ p_cut) on
held-back calibration windows least per share of the budget's measure it frees (FLOPs,
parameters or measured time), until the removed share reaches the budget. As in greedy-ls
(:mod:`depthlens.cut.search`), every run of removed blocks is scored with its least-squares
map (fitted on the original model's cached states; families without an MLP output
projection take no map), and each candidate re-runs only the blocks from the first one it
changes, starting from the stream of the current set.

Lazy greedy: the first step scores every unit; later steps re-score only the ``rescore``
units that ranked best by their last score (a unit's cost rarely falls as others go), so a
step costs a few tail forwards instead of ~3L. Removed sublayers take no map.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from depthlens.capture.hooks import hooks
from depthlens.cut.multi import mlp_transform_hooks, runs_of
from depthlens.cut.search import SearchOptions, StateCache
from depthlens.cut.units import (
    Budget,
    Unit,
    normal_units,
    removed_blocks,
    removed_sublayers,
    unit_shares,
    unit_text,
    zero_output_hooks,
)
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar


@dataclass
class _State:
    units: tuple[Unit, ...]
    score: dict[str, float]
    states: list[torch.Tensor | None]  # the stream entering each block, and the output


class UnitSearch:
    """The cached original states and the scoring of unit sets."""

    def __init__(self, lm: LoadedModel, windows: TokenWindows, opts: SearchOptions) -> None:
        self.lm, self.opts = lm, opts
        self.cache = StateCache(lm, windows, opts)
        self.n = self.cache.n_layers
        self.maps = lm.arch.mlp_out_proj is not None

    def valid(self, units: tuple[Unit, ...]) -> bool:
        """Every block run has a block before it whose MLP is kept; two blocks stay."""
        blocks = removed_blocks(units)
        subs = set(removed_sublayers(units))
        if len(blocks) > self.n - 2:
            return False
        return all(s >= 1 and ("mlp", s - 1) not in subs for s, _e in runs_of(blocks))

    def start(self, units: tuple[Unit, ...], added: Unit) -> int:
        """The first block whose input stream changes when ``added`` joins."""
        i = added[1]
        blocks = removed_blocks(units)
        if i in blocks and self.maps:
            return next(s for s, e in runs_of(blocks) if s <= i < e) - 1
        return i

    @torch.inference_mode()
    def tail(
        self, units: tuple[Unit, ...], start: int, h: torch.Tensor, record: bool
    ) -> tuple[dict[str, float], list[torch.Tensor | None]]:
        """Run blocks start..L-1 with ``units`` removed from stream ``h``; score the output."""
        c, lm = self.cache, self.lm
        blocks = removed_blocks(units)
        runs = runs_of(blocks) if self.maps else []
        merges = tuple((s - 1, c.transform((s, e))) for s, e in runs if s - 1 >= start)
        subs = [u for u in removed_sublayers(units) if u[1] >= start]
        with (
            hooks(mlp_transform_hooks(lm.model, lm.arch, merges)),
            hooks(zero_output_hooks(lm.model, lm.arch, subs)),
        ):
            h, states = c.run_blocks(set(blocks), start, h, record)
        return c.score(h), states

    def candidates(self, units: tuple[Unit, ...]) -> list[tuple[Unit, tuple[Unit, ...]]]:
        """(unit, the normal set with it) for every unit that can go next."""
        have = set(units)
        out = []
        for i in range(self.n):
            if ("block", i) in have:
                continue
            a, m = ("attn", i) in have, ("mlp", i) in have
            opts: list[Unit] = [u for u, gone in ((("attn", i), a), (("mlp", i), m)) if not gone]
            if not a and not m and i >= 1:
                opts.append(("block", i))
            for u in opts:
                new = normal_units((*units, u))
                if self.valid(new):
                    out.append((u, new))
        return out


def search_units(
    lm: LoadedModel,
    windows: TokenWindows,
    budget: Budget,
    opts: SearchOptions,
    *,
    timing: Any = None,
    progress: bool = False,
) -> tuple[tuple[Unit, ...], dict[str, Any], UnitSearch]:
    """Greedy (lazy) search for the cheapest units that free ``budget``'s share.

    Returns (normal units, selection record, the search with its cached maps).
    """
    budget.check()
    t0 = time.perf_counter()
    shares = unit_shares(lm, budget, timing)
    us = UnitSearch(lm, windows, opts)
    h_out = us.cache.score_h[-1]
    cur = _State((), us.cache.score(h_out), list(us.cache.score_h))
    freed = 0.0
    trace: list[dict[str, Any]] = []
    last: dict[Unit, float] = {}
    bar = progress_bar(lm.num_layers * 3, "unit search", enabled=progress, unit="step")
    while freed < budget.target:
        cands = us.candidates(cur.units)
        if not cands:
            raise DepthlensError(
                f"no unit is left to remove after freeing {freed:.3f} of the budget's "
                f"{budget.target:.3f}; ask for a smaller budget"
            )
        scored = _score_step(us, cur, cands, shares, last, opts)
        cur, u, sc = _take_cheapest(us, cur, scored, shares)
        freed += shares[u]
        trace.append(_step(len(trace) + 1, u, shares[u], freed, sc, len(scored)))
        bar.update(1)
    bar.close()
    selection = _selection(us, cur, budget, opts, freed, trace)
    selection["seconds"] = time.perf_counter() - t0
    return cur.units, selection, us


def _take_cheapest(
    us: UnitSearch, cur: _State, scored: list[Any], shares: dict[Unit, float]
) -> tuple[_State, Unit, dict[str, float]]:
    """Remove the unit with the least loss rise per share of the budget it frees.

    Only the blocks after the removed unit are re-run; the states before it are kept.
    """
    u, new, _rise, sc = min(scored, key=lambda x: x[2] / max(shares[x[0]], 1e-12))
    start = us.start(new, u)
    _, states = us.tail(new, start, _h(cur, start), record=True)
    return _State(new, sc, [*cur.states[:start], *states[start:]]), u, sc


def _step(
    k: int, u: Unit, share: float, freed: float, sc: dict[str, float], scored: int
) -> dict[str, Any]:
    """One step of the trace: the unit taken, its share, the share freed so far, scores."""
    return {
        "step": k,
        "unit": unit_text(u),
        "share": share,
        "freed": freed,
        "kl": sc["kl"],
        "nll": sc["nll"],
        "scored": scored,
    }


def _selection(
    us: UnitSearch,
    cur: _State,
    budget: Budget,
    opts: SearchOptions,
    freed: float,
    trace: list[dict[str, Any]],
) -> dict[str, Any]:
    """The plan's record of why these units: the rule, the budget, the trace."""
    return {
        "why": f"lazy greedy over blocks and sublayers: each step removes the unit with the "
        f"smallest rise in {opts.objective} per share of {budget.kind} freed, on "
        f"{us.cache.n_score_tokens} held-back calibration tokens (re-scoring the "
        f"{opts.rescore} best after the first step), until {budget.target:.4f} is freed",
        "objective": opts.objective,
        "budget": budget.to_dict(),
        "freed_share": freed,
        "score": cur.score,
        "units": [unit_text(u) for u in cur.units],
        "trace": trace,
    }


def _h(cur: _State, start: int) -> torch.Tensor:
    h = cur.states[start]
    assert h is not None  # every state keeps its stream at every block
    return h


def _score_step(
    us: UnitSearch,
    cur: _State,
    cands: list[tuple[Unit, tuple[Unit, ...]]],
    shares: dict[Unit, float],
    last: dict[Unit, float],
    opts: SearchOptions,
) -> list[tuple[Unit, tuple[Unit, ...], float, dict[str, float]]]:
    """Score the candidates worth scoring: (unit, new set, rise of the objective, scores).

    ``last`` keeps each unit's latest rise, which ranks the candidates of later steps.
    """
    obj = opts.objective
    if last and opts.rescore > 0:
        # units never scored rank first (their rise is unknown), then by last rise per cost
        def rank(c: tuple[Unit, tuple[Unit, ...]]) -> float:
            return last.get(c[0], -math.inf) / max(shares[c[0]], 1e-12)

        cands = sorted(cands, key=rank)[: opts.rescore]
    out = []
    for u, new in cands:
        start = us.start(new, u)
        sc, _ = us.tail(new, start, _h(cur, start), record=False)
        last[u] = sc[obj] - cur.score[obj]
        out.append((u, new, last[u], sc))
    return out
