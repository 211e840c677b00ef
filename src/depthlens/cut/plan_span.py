"""Plans of the single-selection methods: a drop rule, or one angular span (ReplaceMe).

``plan_drop``: the method's ``select(context)`` names the removed blocks; nothing replaces
them. ``plan_span``: the cheapest contiguous span by angular distance (Gromov et al.), then
replaced by the method's least-squares (``ls``) or cosine (``cos``) map, or by nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from depthlens.cut.calibrate import (
    CalibrationOptions,
    fit_cosine,
    relative_residual,
    solve_ls,
    stream_span_sums,
)
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.request import CutRequest, PlannedMethod, SelectContext, check_enough_tokens
from depthlens.cut.select import select_span
from depthlens.data.windows import TokenWindows
from depthlens.evaluate.flops import cut_savings
from depthlens.models.loading import LoadedModel
from depthlens.results import clean_json


def plan_drop(method: PlannedMethod, req: CutRequest) -> CutPlan:
    """Remove the blocks ``method.select`` names; nothing replaces them."""
    assert method.select is not None  # register_cut_method enforces it for plan_drop
    ctx = req.select_context(req.resolve_n())
    removed, selection = method.select(ctx)
    removed = tuple(removed)
    _check_removed(removed, ctx.num_layers, method.name)
    return _single_plan(method, ctx, removed, selection)


def plan_span(method: PlannedMethod, req: CutRequest) -> CutPlan:
    """The cheapest angular span of n blocks, replaced by ``method.replacement``."""
    n = req.resolve_n()
    if method.replacement != "none":
        check_enough_tokens(req.lm, req.windows)
    ctx = req.select_context(n)
    start, selection = select_span(ctx.selection_profile().angular_distance, n)
    removed = tuple(range(start, start + n))
    if method.replacement == "none":
        return _single_plan(method, ctx, removed, selection)
    transform, fit = _fit(
        ctx.lm, ctx.windows, start, n, method.replacement, ctx.calibration, ctx.progress
    )
    ctx.options.update(dataclasses.asdict(ctx.calibration))
    return _single_plan(method, ctx, removed, selection, start - 1, transform, fit)


def _single_plan(
    method: PlannedMethod,
    ctx: SelectContext,
    removed: tuple[int, ...],
    selection: dict[str, Any],
    merge_into: int | None = None,
    transform: Any = None,
    fit: dict[str, Any] | None = None,
) -> CutPlan:
    return CutPlan(
        envelope=plan_envelope(ctx.lm, ctx.windows, ctx.options),
        method=method.name,
        num_layers=ctx.num_layers,
        removed=removed,
        merge_into=merge_into,
        selection=clean_json(selection),
        fit=clean_json(fit or {}),
        savings=cut_savings(ctx.lm, removed, ctx.windows.seq_len),
        transform=transform,
    )


def _fit(
    lm: LoadedModel,
    windows: TokenWindows,
    start: int,
    n: int,
    replacement: str,
    opts: CalibrationOptions,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    cap = opts.max_samples if replacement == "cos" else 0
    sums, samples = stream_span_sums(lm, windows, start, n, opts, progress=progress, sample_cap=cap)
    t_ls, alpha = solve_ls(sums.fit.A, sums.fit.B, opts.ridge)
    eye = _eye_like(t_ls)  # no replacement: T = I
    fit: dict[str, Any] = {
        "fit_tokens": int(sums.fit.n),
        "heldout_tokens": int(sums.held.n),
        "ridge_used": alpha,
        "rel_residual_identity_heldout": relative_residual(eye, sums.held),
        "rel_residual_ls_fit": relative_residual(t_ls, sums.fit),
        "rel_residual_ls_heldout": relative_residual(t_ls, sums.held),
        # Reported apart: the first position's huge ‖Z‖ would swamp the ordinary tokens.
        "heldout_first_positions": int(sums.held_first.n),
        "rel_residual_identity_first": relative_residual(eye, sums.held_first),
        "rel_residual_ls_first": relative_residual(t_ls, sums.held_first),
    }
    d = t_ls.shape[0]
    if fit["fit_tokens"] < 10 * d:
        fit["warning"] = (
            f"only {fit['fit_tokens']} fit tokens for a {d}x{d} map: the least-squares fit "
            f"can overfit badly; use at least {10 * d} calibration tokens"
        )
    if replacement == "ls":
        return t_ls, fit
    assert samples is not None
    t_cos, info = fit_cosine(samples[0], samples[1], opts)
    fit.update({f"cos_{k}": v for k, v in info.items()})
    fit["rel_residual_cos_heldout"] = relative_residual(t_cos, sums.held)
    fit["rel_residual_cos_first"] = relative_residual(t_cos, sums.held_first)
    return t_cos, fit


def _eye_like(t: Any) -> Any:
    import torch

    return torch.eye(t.shape[0], dtype=t.dtype)


def _check_removed(removed: tuple[int, ...], n_layers: int, method: str) -> None:
    """A selection rule must return distinct, in-range blocks and keep at least two."""
    if len(set(removed)) != len(removed) or not all(0 <= b < n_layers for b in removed):
        raise RuntimeError(f"cut method {method!r} selected invalid blocks {removed}")
    if n_layers - len(removed) < 2:
        raise RuntimeError(f"cut method {method!r} left fewer than 2 blocks")
