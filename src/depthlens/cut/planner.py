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
from depthlens.cut.plan import (
    METHODS,
    MULTI_METHODS,
    REPLACEME,
    SPAN_METHODS,
    CutPlan,
    plan_envelope,
)
from depthlens.cut.select import (
    select_greedy_loss,
    select_last,
    select_lowest,
    select_random,
    select_span,
)
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings
from depthlens.models.loading import LoadedModel
from depthlens.results import clean_json

#: Methods that merge a least-squares map into an MLP output projection.
REPLACEME_FAMILY = (*REPLACEME, *MULTI_METHODS)


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
    if method not in METHODS:
        from depthlens.metrics.registry import unknown_choice

        raise DepthlensError(unknown_choice("--method", method, list(METHODS)))
    if method in REPLACEME_FAMILY and lm.arch.mlp_out_proj is None:
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
    opts = calibration or CalibrationOptions(seed=seed)
    if method in MULTI_METHODS:
        from depthlens.cut.plan_multi import plan_multi

        if method in REPLACEME_FAMILY:
            _check_enough_tokens(lm, windows)
        k = None if blocks is not None else resolve_n(lm.num_layers, n, ratio)
        return plan_multi(lm, windows, method=method, n=k, calibration=opts, search=search,
                          blocks=blocks, mode=multi_mode, progress=progress, profile=profile)
    n = resolve_n(lm.num_layers, n, ratio)
    if method in REPLACEME:
        _check_enough_tokens(lm, windows)
    n_layers = lm.num_layers
    merge_into = None
    transform = None
    fit: dict[str, Any] = {}
    options: dict[str, Any] = {"n": n, "ratio": ratio, "seed": seed}
    if method in SPAN_METHODS or method == "block-influence":
        prof = profile
        if prof is not None:
            from depthlens.profiling.result import check_profile_matches

            check_profile_matches(prof, lm)
        if prof is None or len(prof.angular_distance[0]) < n:
            prof = _profile(lm, windows, n, last_token_only, opts, progress)
        options.update(last_token_only=last_token_only,
                       include_first_token=opts.include_first_token)  # fmt: skip
        if method == "block-influence":
            removed, selection = select_lowest(prof.metrics["block_influence"], n,
                                               "block_influence")  # fmt: skip
        else:
            start, selection = select_span(prof.angular_distance, n)
            removed = tuple(range(start, start + n))
            if method in REPLACEME:
                merge_into = start - 1
                transform, fit = _fit(lm, windows, start, n, method, opts, progress)
                options.update(dataclasses.asdict(opts))
    elif method == "greedy-loss":
        sub = _subset(windows, greedy_windows)
        removed, selection = select_greedy_loss(lm, sub, n, batch_size=opts.batch_size,
                                                progress=progress)  # fmt: skip
        options.update(greedy_windows=len(sub))
    elif method == "last":
        removed, selection = select_last(n_layers, n)
    else:
        removed, selection = select_random(n_layers, n, seed)
    return CutPlan(
        envelope=plan_envelope(lm, windows, options), method=method, num_layers=n_layers,
        removed=tuple(removed), merge_into=merge_into, selection=clean_json(selection),
        fit=clean_json(fit), savings=cut_savings(lm, tuple(removed), windows.seq_len),
        transform=transform,
    )  # fmt: skip


def _profile(lm: LoadedModel, windows: TokenWindows, n: int, last_token_only: bool,
             opts: CalibrationOptions, progress: bool) -> Any:  # fmt: skip
    from depthlens.profiling import ProfileOptions, profile

    popts = ProfileOptions(lens=False, n_max=n, last_token_only=last_token_only,
                           include_first_token=opts.include_first_token,
                           batch_size=opts.batch_size)  # fmt: skip
    return profile(lm, windows, popts, progress=progress)


def _fit(lm: LoadedModel, windows: TokenWindows, start: int, n: int, method: str,
         opts: CalibrationOptions, progress: bool) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    cap = opts.max_samples if method == "replaceme-cos" else 0
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
    if method == "replaceme-ls":
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


def _subset(windows: TokenWindows, k: int) -> TokenWindows:
    if k < 1:
        raise DepthlensError(f"--greedy-windows must be at least 1, got {k}")
    return TokenWindows(windows.input_ids[:k], windows.attention_mask[:k],
                        {**windows.identity, "subset": f"first {k} windows"})  # fmt: skip
