"""Loss-aware choice of the removed set: greedy and beam search with a least-squares refit.

Each candidate removed set R is scored by what it does *with its replacement*: every run
of R gets its ReplaceMe map (fitted on the original model's states, the "joint"
approximation of :mod:`depthlens.cut.multi`), and the score is KL(p_orig ‖ p_cut) on
held-back calibration windows (or their next-token NLL). Greedy (``beam=1``) adds one block
per step with a refit; the beam keeps the ``beam`` best sets of each size. It is SLEB's
greedy removal (Song et al., 2024) with ReplaceMe's map (Shopkhoev et al., 2025) refitted
at every step.

Cost, in forward-equivalents (FLOPs of one full forward over the calibration tokens):

- one pass over every calibration window caches h_l at every block boundary and every
  block's MLP output M_l (bfloat16, fit windows) and h_l in float32 plus each block's
  call arguments and the original log-probabilities (score windows): 1 FE;
- each candidate runs only the blocks from the changed run's merge block onward, starting
  from the stored stream of its parent set (prefix reuse), and only on the score windows
  (``score_windows`` of them, a small share of the tokens), plus the unembedding;
- the LS maps come from the cached states (matmuls, no forward), memoised per run.

The score uses the lens readout (the model's final norm and unembedding), so it leaves
out model-specific logit post-processing other than Gemma's soft-capping; original and
cut are read the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from depthlens.arch.spec import blocks_of
from depthlens.capture.hooks import added_by, first_tensor, forward_kwargs, hooks
from depthlens.cut.calibrate import solve_ls
from depthlens.cut.multi import mlp_transform_hooks, runs_of
from depthlens.data.masks import real_positions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token
from depthlens.metrics.lens import Lens
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar

OBJECTIVES = ("kl", "nll")


@dataclass(frozen=True)
class SearchOptions:
    """Choices of the loss-aware search; all of them go into the plan."""

    beam: int = 1  # 1 = greedy
    score_windows: int = 2  # last calibration windows, held back to score candidates
    fit_tokens: int = 16384  # cap on the cached fit tokens (the final refit uses all)
    objective: str = "kl"  # "kl": KL(p_orig ‖ p_cut); "nll": next-token loss
    ridge: float = 0.0
    batch_size: int = 4
    fit_include_first_token: bool = True
    # > 0: per parent, KL-score only the ``prefilter`` candidates whose runs' LS residuals
    # (from the cached states: no forward) are smallest; 0 scores every candidate.
    prefilter: int = 0
    # False: keep the search's own maps (joint, fitted on the cached bf16 states) instead of
    # a final refit pass over every calibration window (saves up to one forward).
    refit: bool = True
    # units-ls (lazy greedy): after its first step, re-score only this many best-ranked
    # units per step; 0 re-scores every unit at every step.
    rescore: int = 6


class StateCache:
    """Original states for the search: fit rows (bf16) and score windows (fp32, per block)."""

    def __init__(self, lm: LoadedModel, windows: TokenWindows, opts: SearchOptions) -> None:
        if opts.score_windows < 1 or opts.score_windows >= len(windows):
            raise DepthlensError(
                f"--score-windows must be in 1..{len(windows) - 1} (the calibration text has "
                f"{len(windows)} windows), got {opts.score_windows}; use more --max-tokens"
            )
        self.lm, self.opts = lm, opts
        model: Any = lm.model
        self.blocks = blocks_of(model, lm.arch)
        self.n_layers = len(self.blocks)
        self.lens = Lens.of(model, lm.arch)
        n_fit = len(windows) - opts.score_windows
        self.fit_h: list[list[torch.Tensor]] = [[] for _ in range(self.n_layers + 1)]
        self.fit_m: list[list[torch.Tensor]] = [[] for _ in range(self.n_layers)]
        valid = real_positions(windows.attention_mask, opts.fit_include_first_token)
        budget = opts.fit_tokens
        for k in range(0, n_fit, opts.batch_size):
            rows = torch.arange(k, min(k + opts.batch_size, n_fit))
            if budget <= 0:
                break
            h, m, _ = self._forward(windows, rows, record_calls=False)
            sel = valid[rows]
            for layer, t in enumerate(h):
                self.fit_h[layer].append(t[sel].to(torch.bfloat16))
            for layer, t in enumerate(m):
                self.fit_m[layer].append(t[sel].to(torch.bfloat16))
            budget -= int(sel.sum())
        self.h = [torch.cat(x) for x in self.fit_h]  # (N, d) each
        self.m = [torch.cat(x) for x in self.fit_m]
        del self.fit_h, self.fit_m
        rows = torch.arange(n_fit, len(windows))
        self.score_h, _, self.calls = self._forward(windows, rows, record_calls=True)
        self.score_mask = windows.attention_mask[rows].bool()  # (S, T)
        ids = windows.input_ids[rows]
        nxt = torch.full_like(ids, -1)
        keep = self.score_mask[:, 1:] & self.score_mask[:, :-1]
        nxt[:, :-1] = torch.where(keep, ids[:, 1:], torch.full_like(ids[:, 1:], -1))
        self.orig_logp = self._logp(self.score_h[-1])
        # scored where the logits are: copying (N_s, V) log-probs to the host for every
        # candidate dominated the search's time on a GPU (282 candidates, 146 s on an H200)
        self.next_ids = nxt[self.score_mask].to(self.orig_logp.device)  # (N_s,)
        self.orig_p = self.orig_logp.exp()  # once, not once per candidate
        self.fit_windows = n_fit
        self.n_fit_tokens = int(self.h[0].shape[0])
        self.n_score_tokens = int(self.score_mask.sum())
        self._a: dict[int, torch.Tensor] = {}
        self._t: dict[tuple[int, int], torch.Tensor] = {}
        self._res: dict[tuple[int, int], float] = {}

    @torch.inference_mode()
    def _forward(self, windows: TokenWindows, rows: torch.Tensor, record_calls: bool) -> Any:
        """Full forward of ``rows``: h_0..h_L, M_0..M_{L−1}, and (optionally) block calls."""
        model: Any = self.lm.model
        spec = self.lm.arch
        n = self.n_layers
        h: list[Any] = [None] * (n + 1)
        m: list[Any] = [None] * n
        calls: list[Any] = [None] * n

        def make(i: int) -> list[Any]:
            blk = self.blocks[i]

            def pre(_mod: Any, args: tuple, kwargs: dict) -> None:
                if i == 0:
                    h[0] = kwargs.get("hidden_states", args[0] if args else None)
                if record_calls:
                    calls[i] = (args[1:], dict(kwargs))

            def post(_mod: Any, _a: tuple, _k: dict, out: Any) -> None:
                h[i + 1] = first_tensor(out)

            def on_mlp(_mod: Any, _a: tuple, out: Any) -> None:
                m[i] = added_by(spec, out)  # M: what the MLP adds

            return [
                blk.register_forward_pre_hook(pre, with_kwargs=True),
                blk.register_forward_hook(post, with_kwargs=True),
                blk.get_submodule(spec.mlp).register_forward_hook(on_mlp),
            ]

        kw = forward_kwargs(model)
        with hooks(lambda: [x for i in range(n) for x in make(i)]):
            model(
                input_ids=windows.input_ids[rows].to(self.lm.device),
                attention_mask=windows.attention_mask[rows].to(self.lm.device),
                **kw,
            )
        h = [t.float() for t in h]
        return h, [t.float() for t in m], calls

    def _logp(self, h_last: torch.Tensor) -> torch.Tensor:
        """(N_s, V) float32 log-probabilities of the lens readout on the score tokens.

        They stay on the model's (last block's) device, where ``_score`` reduces them.
        """
        with torch.inference_mode():
            z = self.lens.logits(h_last[self.score_mask.to(h_last.device)])
            return torch.log_softmax(z, dim=-1)

    def transform(self, run: tuple[int, int]) -> torch.Tensor:
        """The LS map of run [s, e) on the original model's states (memoised)."""
        if run not in self._t:
            s, e = run
            i = s - 1
            m = self.m[i].double()  # (N, d)
            if i not in self._a:
                self._a[i] = m.T @ m
            z = self.h[e].double() - self.h[s].double() + m  # Z = h_e − (h_s − M)
            t, _ = solve_ls(self._a[i], m.T @ z, self.opts.ridge)
            self._t[run] = t
            # share of the stream h_e that the replaced run gets wrong: ‖MT − Z‖² / ‖h_e‖²
            self._res[run] = float(((m @ t - z) ** 2).sum() / (self.h[e].double() ** 2).sum())
        return self._t[run]

    def proxy(self, removed: tuple[int, ...]) -> float:
        """Σ over runs of the stream share each replaced run gets wrong (no forward)."""
        total = 0.0
        for run in runs_of(removed):
            self.transform(run)
            total += self._res[run]
        return total

    @torch.inference_mode()
    def tail(
        self, removed: tuple[int, ...], start: int, h_start: torch.Tensor, record: bool
    ) -> tuple[dict[str, float], list[torch.Tensor | None]]:
        """Run blocks start..L−1 of the cut model from state ``h_start``; score the output."""
        runs = runs_of(removed)
        merges = tuple((s - 1, self.transform((s, e))) for s, e in runs if s - 1 >= start)
        with hooks(mlp_transform_hooks(self.lm.model, self.lm.arch, merges)):
            h, states = self.run_blocks(set(removed), start, h_start, record)
        return self._score(h), states

    def run_blocks(
        self, gone: set[int], start: int, h: torch.Tensor, record: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Blocks start..L−1 but ``gone`` on stream ``h``, under the caller's hooks.

        Returns the last stream and, with ``record``, the stream entering each block from
        ``start`` on (index L: the last), so a later step can resume from any of them.
        """
        states: list[torch.Tensor | None] = [None] * (self.n_layers + 1)
        for j in range(start, self.n_layers):
            if record:
                states[j] = h
            if j in gone:
                continue
            args, kw = self.calls[j]
            h = first_tensor(self.blocks[j](h, *args, **kw))
        states[self.n_layers] = h
        return h, states

    def score(self, h_last: torch.Tensor) -> dict[str, float]:
        """KL(p_orig ‖ p) and the next-token NLL of the score tokens, read from ``h_last``."""
        return self._score(h_last)

    def _score(self, h_last: torch.Tensor) -> dict[str, float]:
        logp = self._logp(h_last)
        kl = (self.orig_p * (self.orig_logp - logp)).sum(-1).mean()
        has = self.next_ids >= 0
        nll = -logp[has].gather(-1, self.next_ids[has].unsqueeze(-1)).mean()
        return {"kl": float(kl), "nll": float(nll)}


@dataclass
class _Entry:
    removed: tuple[int, ...]
    score: dict[str, float]
    states: list[torch.Tensor | None]


def search_removed(
    lm: LoadedModel, windows: TokenWindows, n: int, opts: SearchOptions, progress: bool = False
) -> tuple[tuple[int, ...], dict[str, Any], Any]:
    """Beam search (``opts.beam`` = 1: greedy) for ``n`` blocks.

    Returns (removed, selection, maps_by_n): ``maps_by_n[k]`` are the search's own
    (block, T) per run of its best k-block set (k = 1..n).
    """
    if opts.objective not in OBJECTIVES:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("--objective", opts.objective, list(OBJECTIVES)))
    if opts.beam < 1:
        raise DepthlensError(f"--beam must be at least 1, got {opts.beam}")
    t0 = time.perf_counter()
    cache = StateCache(lm, windows, opts)
    fl = flops_per_token(lm, windows.seq_len)
    cost = {
        "cache_pass": float(windows.n_tokens * fl["total"]),
        "candidates": 0.0,
        "seconds_cache": time.perf_counter() - t0,
    }
    beam = [_Entry((), {"kl": 0.0, "nll": float("nan")}, list(cache.score_h))]
    trace: list[dict[str, Any]] = []
    best_by_n: dict[int, list[int]] = {}
    maps_by_n: dict[int, Any] = {}
    bar = progress_bar(
        sum(cache.n_layers - 1 - k for k in range(n)) * opts.beam, "search", enabled=progress
    )
    for step in range(n):
        scored = _score_children(cache, beam, opts, fl, cost, bar)
        ranked = sorted(scored.items(), key=lambda kv: kv[1][0][opts.objective])
        new_beam = [
            _child(cache, beam[p_idx], cand, sc, fl, cost)
            for cand, (sc, p_idx, _c) in ranked[: opts.beam]
        ]
        trace.append(_trace_step(step, beam, scored, new_beam))
        beam = new_beam
        best_by_n[step + 1] = list(beam[0].removed)
        maps_by_n[step + 1] = tuple(
            (s - 1, cache.transform((s, e))) for s, e in runs_of(beam[0].removed)
        )
    bar.close()
    cost["seconds"] = time.perf_counter() - t0
    selection = {
        "why": f"{'greedy' if opts.beam == 1 else f'beam ({opts.beam})'} search: {n} steps, "
        f"each adding the block whose removal, with every run replaced by its refitted LS "
        f"map, gives the lowest {opts.objective} on {cache.n_score_tokens} held-back "
        "calibration tokens",
        "objective": opts.objective,
        "score": beam[0].score,
        "best_by_n": best_by_n,
        "trace": trace,
        "cost": _cost_report(cache, windows, fl, cost, trace),
    }
    return beam[0].removed, selection, maps_by_n


def _score_children(
    cache: StateCache,
    beam: list[_Entry],
    opts: SearchOptions,
    fl: dict[str, Any],
    cost: dict[str, float],
    bar: Any,
) -> dict:
    """Every set one block larger than a beam entry, scored from its parent's stream."""
    scored: dict[tuple[int, ...], tuple[dict[str, float], int, int]] = {}
    for p_idx, parent in enumerate(beam):
        for c in _candidates(cache, parent.removed, opts.prefilter):
            cand = tuple(sorted((*parent.removed, c)))
            if cand in scored or len(cand) > cache.n_layers - 2:
                continue
            # blocks before the changed run's merge block compute what the parent computes
            start = next(s for s, e in runs_of(cand) if s <= c < e) - 1
            h0 = parent.states[start]
            assert h0 is not None  # every entry stores its stream at every block
            sc, _ = cache.tail(cand, start, h0, record=False)
            cost["candidates"] += _tail_flops(fl, cand, start) * cache.n_score_tokens
            scored[cand] = (sc, p_idx, c)
            bar.update(1)
    return scored


def _child(
    cache: StateCache,
    parent: _Entry,
    cand: tuple[int, ...],
    score: dict[str, float],
    fl: dict[str, Any],
    cost: dict[str, float],
) -> _Entry:
    """A kept set with its stream at every block (recomputed from its first merge block)."""
    start = runs_of(cand)[0][0] - 1
    h_start = parent.states[start]
    assert h_start is not None
    _, states = cache.tail(cand, start, h_start, record=True)
    cost["candidates"] += _tail_flops(fl, cand, start) * cache.n_score_tokens
    return _Entry(cand, score, [*parent.states[:start], *states[start:]])


def _cost_report(
    cache: StateCache,
    windows: TokenWindows,
    fl: dict[str, Any],
    cost: dict[str, float],
    trace: list[dict[str, Any]],
) -> dict[str, Any]:
    """Forward-equivalents: FLOPs over those of one full forward on the calibration tokens."""
    denom = windows.n_tokens * fl["total"]
    return {
        "forward_equivalents": (cost["cache_pass"] + cost["candidates"]) / denom,
        "cache_pass_fe": cost["cache_pass"] / denom,
        "candidates_fe": cost["candidates"] / denom,
        "candidates_scored": sum(len(t["candidates"]) for t in trace),
        "ls_maps_fitted": len(cache._t),
        "fit_tokens": cache.n_fit_tokens,
        "score_tokens": cache.n_score_tokens,
        "calibration_tokens": windows.n_tokens,
        "seconds_cache": cost["seconds_cache"],
        "seconds": cost["seconds"],
    }


def _candidates(cache: StateCache, removed: tuple[int, ...], prefilter: int) -> list[int]:
    """Blocks 1..L−1 not yet removed; with ``prefilter`` > 0 the best by the LS proxy."""
    cands = [c for c in range(1, cache.n_layers) if c not in removed]
    if prefilter <= 0 or len(cands) <= prefilter:
        return cands
    key = {c: cache.proxy(tuple(sorted((*removed, c)))) for c in cands}
    return sorted(cands, key=lambda c: key[c])[:prefilter]


def _tail_flops(fl: dict[str, Any], removed: tuple[int, ...], start: int) -> float:
    gone = set(removed)
    return float(
        sum(f for j, f in enumerate(fl["blocks"]) if j >= start and j not in gone) + fl["head"]
    )


def _trace_step(step: int, beam: list[_Entry], scored: dict, new_beam: list[_Entry]) -> dict:
    """One step of the trace: every candidate (parent, block, kl, nll) and the survivors."""
    return {
        "step": step + 1,
        "parents": [list(e.removed) for e in beam],
        "candidates": [
            [p, c, round(sc["kl"], 6), round(sc["nll"], 6)] for sc, p, c in scored.values()
        ],
        "kept": [{"removed": list(e.removed), **e.score} for e in new_beam],
    }
