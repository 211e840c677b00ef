"""``depthlens skip`` and ``depthlens think``: the causal analyses of SPEC."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from depthlens.cli.common import (
    Default,
    add_batch_size_arg,
    add_data_args,
    add_first_token_arg,
    add_lens_kernel_arg,
    add_model_args,
    add_output_args,
    load_model_and_windows,
    load_model_from_args,
    safe_text,
    status,
)
from depthlens.cli.table import fmt, render_table
from depthlens.dist import is_main_rank
from depthlens.errors import DepthlensError
from depthlens.models.registry import DEFAULT_MODEL


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module."""
    _register_skip(sub)
    _register_think(sub)


def _register_skip(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "skip",
        help="skip sweep: what removing each block changes downstream and at the output",
        description="For every block l: KL(p_L ‖ p_L^skip), Δ loss and skip_future[l][j], "
        "with the attention-only and MLP-only variants (Csordás et al.).",
        epilog="example: depthlens skip smollm2-135m --data wiki --max-tokens 4096 -o skip.json",
    )
    add_model_args(s)
    add_data_args(s)
    s.set_defaults(seq_len=Default(256), max_tokens=4096)
    add_skip_args(s)
    add_output_args(s, "write the skip JSON here", quiet_help="no progress bar or table")
    s.set_defaults(func=run_skip)


def _register_think(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "think",
        help="generate greedily and show each token's reasoning score and settling layer",
        description="Reasoning score (mean late-block JSD to the output) and settling layer "
        "(first depth with JSD ≤ g) of each generated token, and the deep-thinking ratio.",
        epilog='example: depthlens think smollm2-135m "The capital of France is" '
        "--max-new-tokens 16 -o think.json",
    )
    # MODEL first, as everywhere; a lone argument is the prompt (for the default model),
    # never a prompt taken for a model name.
    t.add_argument(
        "model",
        nargs="?",
        default=None,  # None: one argument only, the prompt (checked in run_think)
        metavar="MODEL",
        help=f"packaged name, local HF dir, .gguf or hub id ({DEFAULT_MODEL})",
    )
    t.add_argument("prompt", help="text to continue (with --max-new-tokens 0: text to score)")
    add_model_args(t, positional=False)
    _add_think_depth_args(t)
    add_output_args(t, "write the think JSON here", quiet_help=None)
    t.set_defaults(func=run_think)


def _add_think_depth_args(t: argparse.ArgumentParser) -> None:
    """How depth is read off each token: settling threshold, deep ratio, late blocks, lens."""
    g = t.add_argument_group("depth")
    g.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (32)")
    g.add_argument(
        "--settle-threshold",
        type=float,
        default=0.5,
        metavar="G",
        help="JSD at which a token counts as settled (g = 0.5)",
    )
    g.add_argument(
        "--deep-ratio",
        type=float,
        default=0.85,
        metavar="RHO",
        help="a token is deep when it settles at depth ≥ ρ·L (0.85)",
    )
    g.add_argument(
        "--late-blocks",
        type=int,
        default=None,
        metavar="K",
        help="|J|: late blocks for the reasoning score (default ⌈L/4⌉)",
    )
    g.add_argument(
        "--lens",
        default="logit",
        metavar="logit|tuned:DIR",
        help="read the depths with the logit lens (default) or a tuned lens",
    )


def add_skip_args(p: argparse.ArgumentParser) -> None:
    """Options of the skip sweep."""
    g = p.add_argument_group("skip sweep")
    # The same names as every other command (the --skip-* spellings still work).
    add_batch_size_arg(g, default=2, aliases=("--skip-batch-size",))
    g.add_argument(
        "--sublayers",
        default="attn,mlp",
        help="sublayer-only variants: attn,mlp (default), attn, mlp or none",
    )
    add_first_token_arg(g, aliases=("--skip-include-first-token",))
    add_lens_kernel_arg(g, "the KL reductions", aliases=("--skip-lens-kernel",))


def skip_options_from_args(args: argparse.Namespace) -> Any:
    """SkipOptions from the parsed flags."""
    from depthlens.causal import SkipOptions

    raw = [s.strip() for s in str(args.sublayers).split(",") if s.strip()]
    subs = () if raw == ["none"] else tuple(raw)
    opts = SkipOptions(
        sublayers=subs,  # type: ignore[arg-type]
        batch_size=args.batch_size,
        include_first_token=args.include_first_token,
        lens_kernel=args.lens_kernel,
    )
    opts.validate()
    return opts


def skip_table(res: Any) -> str:
    """Per-block table of the headline skip numbers."""
    n = len(res.skip_out_kl_mean)
    rows = []
    for l in range(n):
        fut = [v for v in res.skip_future[l] if v is not None]
        row = [
            l,
            fmt(res.skip_out_kl_mean[l]),
            fmt(res.skip_out_kl_max[l]),
            fmt(res.delta_loss[l]),
            fmt(sum(fut) / len(fut) if fut else None),
        ]
        for sub in (res.attn_only, res.mlp_only):
            if sub is not None:
                row.append(fmt(sub["skip_out_kl_mean"][l]))
        rows.append(row)
    head = ["block", "outKL", "outKLmax", "Δloss", "future"]
    head += [h for h, s in (("attn outKL", res.attn_only), ("mlp outKL", res.mlp_only)) if s]
    return render_table(head, rows)


def run_skip(args: argparse.Namespace) -> int:
    """Load, window, sweep, print, write."""
    from depthlens.causal import skip_sweep
    from depthlens.io import check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    opts = skip_options_from_args(args)
    lm, windows = load_model_and_windows(args)
    status(f"skip sweep over {windows.n_tokens} tokens, {lm.num_layers} blocks …")
    t0 = time.perf_counter()
    res = skip_sweep(lm, windows, opts, progress=not args.quiet)
    if not args.quiet:
        print(skip_table(res))
        status(f"swept in {time.perf_counter() - t0:.1f} s")
    if out and is_main_rank():  # under torchrun every rank has the result; one writes it
        res.save(out)
        status(f"wrote {out}")
    return 0


_COLORS = ("\033[32m", "\033[33m", "\033[31m")  # early, middle, deep
_RESET = "\033[0m"


def _use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def think_lines(res: Any, color: bool) -> list[str]:
    """One line per scored token: the token, R_t, settling layer, deep flag."""
    from depthlens.metrics.catalog.causal import REASONING_SCORE, SETTLING_LAYER

    n = int(res.options["num_layers"])
    lines = [f"{'token':<18} {'R':>7} {'settle':>8}  deep"]
    for t in res.per_token:
        tok = safe_text(repr(t["token"])[1:-1])[:16]
        score, settle = t[REASONING_SCORE.name], t[SETTLING_LAYER.name]
        line = f"{tok:<18} {fmt(score, 7)} {settle:>4}/{n:<3}  {'deep' if t['deep'] else ''}"
        if color:
            frac = settle / n
            code = _COLORS[2] if t["deep"] else _COLORS[1] if frac >= 0.5 else _COLORS[0]
            line = f"{code}{line}{_RESET}"
        lines.append(line)
    span = res.span
    lines.append(
        f"mean R {fmt(span['reasoning_score_mean'], 0).strip()}, mean settling layer "
        f"{fmt(span['settling_layer_mean'], 0).strip()}/{n}, deep-thinking ratio "
        f"{fmt(res.deep_thinking_ratio, 0).strip()}"
    )
    return lines


def _check_prompt_is_not_a_model(args: argparse.Namespace) -> None:
    """A lone argument that names a model (a folder, a .gguf, a packaged name) lacks a prompt.

    ``think pruned4`` would otherwise run the default model with "pruned4" as its prompt.
    """
    from depthlens.models.registry import PACKAGED

    if args.model is not None:
        return
    p = args.prompt.strip()
    if p in PACKAGED or p.endswith(".gguf") or os.path.exists(os.path.expanduser(p)):
        raise DepthlensError(
            f"'{p}' is a model, not a prompt, and no prompt follows it; pass both: "
            f'depthlens think {p} "The capital of France is"'
        )


def run_think(args: argparse.Namespace) -> int:
    """Validate, load, generate, score, print, write."""
    from depthlens.causal import ThinkOptions, think
    from depthlens.io import check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    if not args.prompt.strip():
        raise DepthlensError('the prompt is empty; pass some text, e.g. "The capital of France"')
    _check_prompt_is_not_a_model(args)
    args.model = args.model or DEFAULT_MODEL
    opts = ThinkOptions(
        settle_threshold=args.settle_threshold,
        deep_ratio=args.deep_ratio,
        late_blocks=args.late_blocks,
        max_new_tokens=args.max_new_tokens,
        lens=args.lens,
    )
    opts.validate()
    lm = load_model_from_args(args)
    res = think(lm, args.prompt, opts)
    # Model-made text can hold ANSI escapes or control characters: show them escaped.
    print(safe_text(res.text if res.options["scored"] == "prompt" else args.prompt + res.text))
    print("\n".join(think_lines(res, _use_color())))
    if out and is_main_rank():  # under torchrun every rank has the result; one writes it
        res.save(out)
        status(f"wrote {out}")
    return 0
