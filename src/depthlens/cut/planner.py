"""``plan_cut``: choose blocks by one of the SPEC methods and fit the ReplaceMe map."""

from __future__ import annotations

import dataclasses
from typing import Any

from depthlens.cut.calibrate import (
    CalibrationOptions,
    _no_proj_message,
    fit_cosine,
    relative_residual,
    solve_ls,
    stream_span_sums,
)
from depthlens.cut.methods import SelectContext, get_cut_method
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.select import select_span
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings
from depthlens.models.loading import LoadedModel
from depthlens.results import clean_json


def resolve_n(num_layers: int, n: int | None, ratio: float | None) -> int:
    """Blocks to remove from ``--remove N`` or ``--ratio r`` (rounded, at least 1)."""
    if (n is None) == (ratio is None):
        raise DepthlensError("give exactly one of --remove N or --ratio r")
    if ratio is not None:
        if not 0 < ratio < 1:
            raise DepthlensError(f"--ratio must be strictly between 0 and 1, got {ratio}")
        exact = ratio * num_layers
        n = round(exact)
        if n < 1:
            raise DepthlensError(
                f"--ratio {ratio} of {num_layers} blocks is {exact:.2f} blocks, which rounds to "
                f"0; pass --remove 1 or a --ratio of at least {0.5 / num_layers:.3f}"
            )
    assert n is not None
    if n <= 0:
        raise DepthlensError(f"--remove must be at least 1, got {n}")
    if n >= num_layers - 1:
        raise DepthlensError(
            f"--remove {n} leaves fewer than 2 of the model's {num_layers} blocks; "
            f"remove at most {num_layers - 2}"
        )
    return n


def check_method(method: str, lm: LoadedModel) -> None:
    """Refuse an unknown method, or ReplaceMe on a family without an MLP output projection."""
    if get_cut_method(method).replacement != "none" and lm.arch.mlp_out_proj is None:
        raise DepthlensError(_no_proj_message(lm))


def plan_cut(
    lm: LoadedModel,
    windows: TokenWindows,
    *,
    method: str = "replaceme-ls",
    n: int | None = None,
    ratio: float | None = None,
    calibration: CalibrationOptions | None = None,
    last_token_only: bool = False,
    greedy_windows: int = 4,
    seed: int = 0,
    progress: bool = False,
    profile: Any = None,
    search: Any = None,
    blocks: tuple[int, ...] | None = None,
    multi_mode: str = "sequential",
) -> CutPlan:
    """Plan removing ``n`` blocks (or ``ratio`` of them) from ``lm`` with ``method``.

    ``profile``: a :class:`~depthlens.profiling.Profile` of ``lm`` on ``windows`` with
    ``n_max >= n`` and the same token options, reused instead of a new selection pass
    (the benchmark plans many methods from one pass). ``search`` (a
    :class:`~depthlens.cut.search.SearchOptions`), ``blocks`` (replaceme-multi's removed
    set) and ``multi_mode`` ("joint" | "sequential") go to the multi-run methods.
    """
    check_method(method, lm)
    spec = get_cut_method(method)
    opts = calibration or CalibrationOptions(seed=seed)
    if spec.kind == "multi":
        from depthlens.cut.plan_multi import plan_multi

        _check_enough_tokens(lm, windows)
        k = None if blocks is not None else resolve_n(lm.num_layers, n, ratio)
        return plan_multi(lm, windows, method=method, n=k, calibration=opts, search=search,
                          blocks=blocks, mode=multi_mode, progress=progress, profile=profile)
    n = resolve_n(lm.num_layers, n, ratio)
    if spec.replacement != "none":
        _check_enough_tokens(lm, windows)
    n_layers = lm.num_layers
    ctx = SelectContext(lm, windows, n, seed=seed, calibration=opts,
                        last_token_only=last_token_only, greedy_windows=greedy_windows,
                        progress=progress, profile=profile,
                        options={"n": n, "ratio": ratio, "seed": seed})  # fmt: skip
    removed, selection, merge_into, transform, fit = _select(spec, ctx)
    options = ctx.options
    return CutPlan(
        envelope=plan_envelope(lm, windows, options), method=method, num_layers=n_layers,
        removed=tuple(removed), merge_into=merge_into, selection=clean_json(selection),
        fit=clean_json(fit), savings=cut_savings(lm, tuple(removed), windows.seq_len),
        transform=transform,
    )  # fmt: skip


def _select(spec: Any, ctx: SelectContext) -> tuple[tuple[int, ...], dict[str, Any], int | None,
                                                    Any, dict[str, Any]]:  # fmt: skip
    """(removed, selection, merge_into, transform, fit) of a span or a drop method."""
    if spec.kind != "span":
        assert spec.select is not None  # register_cut_method enforces it for "drop"
        removed, selection = spec.select(ctx)
        _check_removed(tuple(removed), ctx.num_layers, spec.name)
        return tuple(removed), selection, None, None, {}
    n = ctx.n
    start, selection = select_span(ctx.selection_profile().angular_distance, n)
    removed = tuple(range(start, start + n))
    if spec.replacement == "none":
        return removed, selection, None, None, {}
    transform, fit = _fit(ctx.lm, ctx.windows, start, n, spec.replacement, ctx.calibration,
                          ctx.progress)  # fmt: skip
    ctx.options.update(dataclasses.asdict(ctx.calibration))
    return removed, selection, start - 1, transform, fit


def _fit(lm: LoadedModel, windows: TokenWindows, start: int, n: int, replacement: str,
         opts: CalibrationOptions, progress: bool) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    cap = opts.max_samples if replacement == "cos" else 0
    sums, samples = stream_span_sums(lm, windows, start, n, opts, progress=progress,
                                     sample_cap=cap)  # fmt: skip
    t_ls, alpha = solve_ls(sums.fit.A, sums.fit.B, opts.ridge)
    fit: dict[str, Any] = {
        "fit_tokens": int(sums.fit.n),
        "heldout_tokens": int(sums.held.n),
        "ridge_used": alpha,
        "rel_residual_identity_heldout": relative_residual(
            _eye_like(t_ls), sums.held),  # no replacement: T = I
        "rel_residual_ls_fit": relative_residual(t_ls, sums.fit),
        "rel_residual_ls_heldout": relative_residual(t_ls, sums.held),
        # Reported apart: the first position's huge ‖Z‖ would swamp the ordinary tokens.
        "heldout_first_positions": int(sums.held_first.n),
        "rel_residual_identity_first": relative_residual(_eye_like(t_ls), sums.held_first),
        "rel_residual_ls_first": relative_residual(t_ls, sums.held_first),
    }  # fmt: skip
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


def _check_enough_tokens(lm: LoadedModel, windows: TokenWindows) -> None:
    """Fail before any forward when the text cannot determine a d x d map."""
    model: Any = lm.model
    d = int(getattr(model.config.get_text_config(), "hidden_size", 0) or 0)
    if windows.n_tokens - len(windows) < d:
        raise DepthlensError(
            f"too little calibration text: {windows.n_tokens} tokens in {len(windows)} "
            f"window(s) for a {d}x{d} linear map (need at least {d} besides each window's "
            "first token, more for a good fit); raise --max-tokens or use a longer --data"
        )


def _eye_like(t: Any) -> Any:
    import torch

    return torch.eye(t.shape[0], dtype=t.dtype)


def _check_removed(removed: tuple[int, ...], n_layers: int, method: str) -> None:
    """A selection rule must return distinct, in-range blocks and keep at least two."""
    if len(set(removed)) != len(removed) or not all(0 <= b < n_layers for b in removed):
        raise RuntimeError(f"cut method {method!r} selected invalid blocks {removed}")
    if n_layers - len(removed) < 2:
        raise RuntimeError(f"cut method {method!r} left fewer than 2 blocks")
