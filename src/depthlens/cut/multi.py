"""ReplaceMe over several runs: one least-squares map per contiguous run of removed blocks.

A removed set R (ascending, no repeats, block 0 kept) splits into maximal runs
[s_k, e_k). Run k gets its own map T_k, fitted as in ReplaceMe (SPEC "Cutting depth") on
block i_k = s_k − 1's MLP output M_k and the target Z_k = h_{e_k} − (h_{s_k} − M_k), and
merged into block i_k's MLP output projection.

Two ways to get the targets (``mode``):

- ``"joint"``: ONE calibration pass over the original model, stopped after the last
  run's end, feeds every run's sums. Approximation: run k's M_k and Z_k are read on the
  original model, although in the cut model the stream entering block i_k has already
  been changed by runs 1..k−1.
- ``"sequential"``: pass k runs the model with runs 1..k−1 already replaced (skipped, and
  their T applied through a scoped hook on the MLP output) and stops after e_k; run k is
  fitted to what that partly-cut model computes. Cost Σ_k e_k / L forward-equivalents
  instead of max_k e_k / L.

The sums are float64 on the CPU, O(d²) per run whatever the number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from depthlens.arch.spec import blocks_of
from depthlens.capture.hooks import (
    added_by,
    capture_blocks,
    first_tensor,
    forward_kwargs,
    hooks,
    replace_first,
    run_forward,
)
from depthlens.cut.calibrate import (
    CalibrationOptions,
    GramSums,
    holdout_rows,
    relative_residual,
    solve_ls,
)
from depthlens.cut.select import skip_blocks
from depthlens.data.masks import real_positions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import Accumulator
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar

MULTI_MODES = ("joint", "sequential")
Run = tuple[int, int]  # [start, end) in original block indices


def check_removed(removed: tuple[int, ...] | list[int], num_layers: int) -> None:
    """Refuse a removed set that is not ascending, repeats a block, or leaves < 2 blocks."""
    r = [int(i) for i in removed]
    if not r:
        raise DepthlensError("the removed set is empty; name at least one block")
    for a, b in zip(r, r[1:], strict=False):
        if b == a:
            raise DepthlensError(f"the removed set {r} repeats block {a}; list each block once")
        if b < a:
            raise DepthlensError(f"the removed set {r} is not ascending ({a} before {b}); sort it")
    if r[0] < 0 or r[-1] >= num_layers:
        raise DepthlensError(
            f"the removed set {r} names blocks outside 0..{num_layers - 1} of this model"
        )
    if num_layers - len(r) < 2:
        raise DepthlensError(
            f"removing {len(r)} of {num_layers} blocks leaves fewer than 2; remove fewer"
        )


def runs_of(removed: tuple[int, ...] | list[int]) -> list[Run]:
    """Maximal contiguous runs [start, end) of an ascending removed set."""
    runs: list[Run] = []
    for i in removed:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


@dataclass
class RunSums(Accumulator):
    """Float64 sums of one run (A = ΣMᵀM, B = ΣMᵀZ, C = Σ‖Z‖², n): fit and held-out."""

    fit: GramSums
    held: GramSums

    @classmethod
    def zeros(cls, d: int) -> RunSums:
        """Empty sums for a d x d map."""
        return cls(GramSums.zeros(d), GramSums.zeros(d))


@dataclass
class MultiFit:
    """The fitted maps and their quality, per run."""

    merges: tuple[tuple[int, torch.Tensor], ...]  # (block i_k, T_k)
    fit: dict[str, Any]
    forward_equivalents: float


def mlp_transform_hooks(model: Any, spec: Any, merges: tuple[tuple[int, torch.Tensor], ...]):  # noqa: ANN201
    """Hook factory: block i's MLP output becomes ``out @ T`` (what merging T does)."""
    blocks = blocks_of(model, spec)

    def make(t: torch.Tensor) -> Any:
        def on_mlp(_m: torch.nn.Module, _a: tuple, out: Any) -> Any:
            y = first_tensor(out)
            return replace_first(out, (y.double() @ t.to(y.device)).to(y.dtype))

        return on_mlp

    return lambda: [
        blocks[i].get_submodule(spec.mlp).register_forward_hook(make(t)) for i, t in merges
    ]


def _pass(
    lm: LoadedModel,
    windows: TokenWindows,
    runs: list[Run],
    sums: list[RunSums],
    opts: CalibrationOptions,
    applied: tuple[tuple[int, torch.Tensor], ...],
    skipped: tuple[int, ...],
    progress: bool,
) -> None:
    """One forward over ``windows`` stopped after the last run's end, feeding every run."""
    from depthlens.dist import rank_world

    model: Any = lm.model
    spec = lm.arch
    blocks = blocks_of(model, spec)
    got: dict[int, torch.Tensor] = {}

    def make(i: int) -> Any:
        def on_mlp(_m: torch.nn.Module, _a: tuple, out: Any) -> None:
            got[i] = added_by(spec, out)  # M: what the MLP adds

        return on_mlp

    valid = real_positions(windows.attention_mask, opts.fit_include_first_token)
    held = holdout_rows(len(windows), opts.holdout_every)
    rank, world = rank_world()
    idx = torch.arange(rank, len(windows), world)
    batches = [idx[k : k + opts.batch_size] for k in range(0, len(idx), opts.batch_size)]
    stop = max(e for _, e in runs) - 1
    bar = progress_bar(len(batches), "calibrate", enabled=progress and rank == 0)
    # Transform hooks first, so the capture hooks (registered after) see T applied.
    with (
        hooks(mlp_transform_hooks(model, spec, applied)),
        skip_blocks(model, spec, skipped),
        capture_blocks(model, spec, attn=False, stop_after=stop) as trace,
        hooks(
            lambda: [
                blocks[s - 1].get_submodule(spec.mlp).register_forward_hook(make(s - 1))
                for s, _ in runs
            ]
        ),
        torch.inference_mode(),
    ):
        for rows in batches:
            trace.clear()
            got.clear()
            run_forward(
                model,
                windows.input_ids[rows].to(lm.device),
                windows.attention_mask[rows].to(lm.device),
                **forward_kwargs(model),
            )
            for run, acc in zip(runs, sums, strict=True):
                _add_run(acc, run, trace.states, got, valid[rows], held[rows])
            bar.update(1)
    bar.close()


def _add_run(
    acc: RunSums,
    run: Run,
    states: Any,
    got: dict[int, torch.Tensor],
    valid: torch.Tensor,
    held: torch.Tensor,
) -> None:
    """Feed one batch's (M, Z) rows of run ``(s, e)`` to its fit or held-out sums.

    ``valid`` is the batch's (B, T) mask of positions that count, ``held`` its (B,) mask of
    held-out windows.
    """
    s, e = run
    h_s, h_e, m = states[s], states[e], got.get(s - 1)
    if h_s is None or h_e is None or m is None:
        raise DepthlensError("the calibration forward did not reach the run's end")
    z = h_e - (h_s - m)  # (B, T, d): Z = h_e − Y
    for part, keep in ((acc.fit, ~held), (acc.held, held)):
        sel = (valid & keep[:, None]).to(m.device)  # (B, T)
        if bool(sel.any()):
            part.add(m[sel], z[sel])


def fit_runs(
    lm: LoadedModel,
    windows: TokenWindows,
    removed: tuple[int, ...],
    opts: CalibrationOptions,
    *,
    mode: str = "joint",
    progress: bool = False,
) -> MultiFit:
    """Fit one LS map per run of ``removed``; ``mode`` "joint" (one pass) or "sequential"."""
    check_removed(removed, lm.num_layers)
    if mode not in MULTI_MODES:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("--multi-mode", mode, list(MULTI_MODES)))
    runs = runs_of(removed)
    if runs[0][0] == 0:
        raise DepthlensError(
            f"block 0 is in the removed set {list(removed)}: replaceme-multi merges each run "
            "into the block before it, and block 0 has none; keep block 0"
        )
    d = int(lm.model.config.get_text_config().hidden_size)  # type: ignore[union-attr,operator]
    sums = [RunSums.zeros(d) for _ in runs]
    n_layers = lm.num_layers
    merges: list[tuple[int, torch.Tensor]] = []
    alphas: list[float] = []
    if mode == "joint":
        _pass(lm, windows, runs, sums, opts, (), (), progress)
        fe = max(e for _, e in runs) / n_layers
    else:
        fe = 0.0
        for k, run in enumerate(runs):
            skipped = tuple(i for s, e in runs[:k] for i in range(s, e))
            _pass(lm, windows, [run], [sums[k]], opts, tuple(merges), skipped, progress)
            sums[k].all_reduce()
            t, alpha = _solve(sums[k], d, opts.ridge)
            merges.append((run[0] - 1, t))
            alphas.append(alpha)
            fe += run[1] / n_layers
    if mode == "joint":
        for k, run in enumerate(runs):
            sums[k].all_reduce()
            t, alpha = _solve(sums[k], d, opts.ridge)
            merges.append((run[0] - 1, t))
            alphas.append(alpha)
    return MultiFit(tuple(merges), _fit_report(runs, sums, merges, alphas, mode, d), fe)


def _solve(acc: RunSums, d: int, ridge: float) -> tuple[torch.Tensor, float]:
    if float(acc.fit.n) < d:
        raise DepthlensError(
            f"too little calibration text: {int(acc.fit.n)} fit tokens for a {d}x{d} linear "
            f"map (need at least {d}); raise --max-tokens or use a longer --data"
        )
    return solve_ls(acc.fit.A, acc.fit.B, ridge)


def _fit_report(
    runs: list[Run],
    sums: list[RunSums],
    merges: list[tuple[int, torch.Tensor]],
    alphas: list[float],
    mode: str,
    d: int,
) -> dict[str, Any]:
    eye = torch.eye(d, dtype=torch.float64)
    per_run: list[dict[str, Any]] = []
    for (s, e), acc, (i, t), alpha in zip(runs, sums, merges, alphas, strict=True):
        per_run.append(
            {
                "run": [s, e],
                "merge_into": i,
                "ridge_used": alpha,
                "fit_tokens": int(acc.fit.n),
                "heldout_tokens": int(acc.held.n),
                "rel_residual_identity_heldout": relative_residual(eye, acc.held),
                "rel_residual_ls_fit": relative_residual(t, acc.fit),
                "rel_residual_ls_heldout": relative_residual(t, acc.held),
            }
        )
    fit: dict[str, Any] = {
        "mode": mode,
        "runs": per_run,
        "fit_tokens": per_run[0]["fit_tokens"],
        "heldout_tokens": per_run[0]["heldout_tokens"],
    }
    if per_run[0]["fit_tokens"] < 10 * d:
        fit["warning"] = (
            f"only {per_run[0]['fit_tokens']} fit tokens for a {d}x{d} map: the least-squares "
            f"fit can overfit badly; use at least {10 * d} calibration tokens"
        )
    return fit
