"""``depthlens plan`` and ``depthlens prune``: a thin shell over :mod:`depthlens.cut`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from depthlens.cli.budget_args import add_budget_args, budget_options, check_budget_args
from depthlens.cli.common import (
    add_batch_size_arg,
    add_data_args,
    add_first_token_arg,
    add_model_args,
    add_output_args,
    check_data_args,
    load_model_from_args,
    load_windows_from_args,
    status,
)

DEFAULT_METHOD = "replaceme-ls"
PLAN_EXAMPLE = "example: depthlens plan smollm2-135m --method replaceme-ls --remove 4"
PRUNE_EXAMPLE = (
    "example: depthlens prune smollm2-135m --method replaceme-ls --remove 4 -o out/pruned "
    "--eval-data wiki-eval"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``plan`` and ``prune``."""
    p = sub.add_parser(
        "plan",
        help="preview a depth cut: which blocks, why, what it saves",
        description="Choose blocks to remove and preview the cut (nothing is written unless -o).",
        epilog=PLAN_EXAMPLE,
    )
    _common(p, "write the plan JSON here")
    p.set_defaults(func=run_plan)
    q = sub.add_parser(
        "prune",
        help="cut blocks and save an ordinary checkpoint",
        description="Plan, apply and save a depth cut as a plain Hugging Face "
        "checkpoint (with depthlens.json).",
        epilog=PRUNE_EXAMPLE,
    )
    _common(q, "checkpoint directory to write", with_plan=True)
    q.add_argument(
        "--eval-data",
        default=None,
        help="also print perplexity before/after on this text (must not overlap "
        "the calibration --data), e.g. wiki-eval",
    )
    q.add_argument("--eval-tokens", type=int, default=4096, help="tokens for --eval-data")
    q.set_defaults(func=run_prune)


def _common(p: argparse.ArgumentParser, output_help: str, with_plan: bool = False) -> None:
    """The options of plan and prune (prune: -o required, and --plan)."""
    add_model_args(p)
    add_data_args(p, default="wiki-calib")
    _add_cut_args(p.add_argument_group("cut"), with_plan)
    _add_multi_args(p.add_argument_group("multi-run methods (replaceme-multi, greedy-ls, beam-ls)"))
    add_budget_args(p)
    add_output_args(p, output_help, required=with_plan)


def _add_cut_args(g: Any, with_plan: bool) -> None:
    from depthlens.cut import method_names

    g.add_argument(
        "--method",
        default=None,  # DEFAULT_METHOD, filled in by _validate once it knows none was given
        metavar="METHOD",
        help=f"selection/replacement method, one of {', '.join(method_names())} ({DEFAULT_METHOD})",
    )
    how = g.add_mutually_exclusive_group()
    how.add_argument(
        "--blocks",
        metavar="I,J,..",
        help="replaceme-multi: the removed blocks themselves, ascending (e.g. 12,13,20-23)",
    )
    how.add_argument("--remove", type=int, metavar="N", help="number of blocks to remove")
    how.add_argument("--ratio", type=float, help="fraction of blocks to remove, in (0, 1)")
    if with_plan:
        how.add_argument(
            "--plan",
            metavar="PLAN.json",
            help="apply this saved plan (written by `depthlens plan -o`, with its "
            ".T.safetensors beside it) instead of planning again",
        )
    add_batch_size_arg(g)
    add_first_token_arg(g, "the calibration statistics")
    g.add_argument(
        "--last-token-only",
        action="store_true",
        help="angular distance on the last token only (Gromov et al.)",
    )
    g.add_argument(
        "--fit-exclude-first-token",
        action="store_true",
        help="leave the first position out of the ReplaceMe fit (not advised: "
        "T then acts on the attention sink unfitted)",
    )
    g.add_argument(
        "--holdout-every",
        type=int,
        default=10,
        help="hold back every k-th calibration window to measure the fit (10)",
    )
    g.add_argument("--ridge", type=float, default=0.0, help="ridge α of the LS solve (0)")
    g.add_argument(
        "--max-samples", type=int, default=8192, help="(M, Z) rows kept for replaceme-cos (8192)"
    )
    g.add_argument("--cos-epochs", type=int, default=10, help="replaceme-cos Adam epochs (10)")
    g.add_argument("--cos-lr", type=float, default=1e-4, help="replaceme-cos Adam lr (1e-4)")
    g.add_argument(
        "--greedy-windows",
        type=int,
        default=4,
        help="calibration windows for greedy-loss (SLEB) (4)",
    )


def _add_multi_args(m: Any) -> None:
    m.add_argument(
        "--multi-mode",
        default="sequential",
        help="targets of later runs: 'sequential' (on the model with earlier runs "
        "replaced) or 'joint' (one pass on the original) (sequential)",
    )
    m.add_argument("--beam", type=int, default=3, help="beam-ls width (3)")
    m.add_argument(
        "--score-windows",
        type=int,
        default=2,
        help="last calibration windows held back to score search candidates (2)",
    )
    m.add_argument(
        "--objective",
        default="kl",
        help="search score: 'kl' to the original's next-token distribution or 'nll' (kl); "
        "'acceptance': plain removals chosen greedily by top-1 agreement with the full "
        "model, the draft of `generate --draft plan:PLAN.json` (leave --method out)",
    )
    m.add_argument(
        "--search-fit-tokens",
        type=int,
        default=16384,
        help="calibration tokens whose states the search caches for its LS fits",
    )
    m.add_argument(
        "--prefilter",
        type=int,
        default=0,
        help="score only the N candidates per step with the smallest LS residual "
        "(no forward needed to rank them); 0 = score all (0)",
    )
    m.add_argument(
        "--no-refit",
        action="store_true",
        help="keep the search's own maps instead of a final refit pass",
    )


def parse_blocks(text: str) -> tuple[int, ...]:
    """``"3,5,12-15"`` -> (3, 5, 12, 13, 14, 15), order and repeats kept for validation."""
    from depthlens.errors import DepthlensError
    from depthlens.spans import parse_blocks as parse_block_list

    try:
        return parse_block_list(text)
    except ValueError:
        raise DepthlensError(
            f"--blocks must be block indices like 3,5,12-15, got {text!r}"
        ) from None


def _validate_numbers(args: argparse.Namespace) -> None:
    """Ranges of the numeric options, the data and the output, before any model is loaded."""
    from pathlib import Path

    from depthlens.data import load_text
    from depthlens.errors import DepthlensError

    check_data_args(args)
    for flag, v, low in (
        ("--batch-size", args.batch_size, 1),
        ("--ridge", args.ridge, 0.0),
        ("--holdout-every", args.holdout_every, 0),
        ("--max-samples", args.max_samples, 1),
        ("--cos-epochs", args.cos_epochs, 0),
        ("--greedy-windows", args.greedy_windows, 1),
        ("--eval-tokens", getattr(args, "eval_tokens", 1), 1),
    ):
        if v < low:
            raise DepthlensError(f"{flag} must be ≥ {low}, got {v}")
    if not args.cos_lr > 0:
        raise DepthlensError(f"--cos-lr must be > 0, got {args.cos_lr}")
    out = getattr(args, "output", None)
    if out and Path(out).expanduser().resolve() == Path(args.model).expanduser().resolve():
        raise DepthlensError(f"-o {out} is the model being cut; write the result to another path")
    load_text(args.data, text_field=args.text_field)  # a bad text fails now, not after loading


def _validate(args: argparse.Namespace) -> None:
    """Checks that need no model, so bad input fails before a slow load."""
    from depthlens.cut import CUT_METHODS
    from depthlens.errors import DepthlensError

    given_method = args.method  # None: left out, which --objective acceptance requires
    args.method = args.method or DEFAULT_METHOD
    _validate_numbers(args)
    check_budget_args(args)
    asked = (args.remove, args.ratio, getattr(args, "blocks", None), getattr(args, "plan", None))
    if not CUT_METHODS[args.method].takes_budget and all(a is None for a in asked):
        raise DepthlensError(
            "give --remove N, --ratio r or --blocks I,J,..; prune also takes --plan PLAN.json"
        )
    if args.remove is not None and args.remove <= 0:
        raise DepthlensError(f"--remove must be at least 1, got {args.remove}")
    if args.ratio is not None and not 0 < args.ratio < 1:
        raise DepthlensError(f"--ratio must be strictly between 0 and 1, got {args.ratio}")
    from depthlens.cut import method_names
    from depthlens.cut.multi import MULTI_MODES, check_removed
    from depthlens.cut.search import OBJECTIVES
    from depthlens.registry import unknown_choice

    for what, got, choices in (
        ("--method", args.method, method_names()),
        ("--multi-mode", args.multi_mode, MULTI_MODES),
        ("--objective", args.objective, (*OBJECTIVES, "acceptance")),
    ):
        if got not in choices:
            raise DepthlensError(unknown_choice(what, got, list(choices)))
    if args.blocks is not None:
        takers = [m.name for m in CUT_METHODS.values() if m.takes_blocks]
        if not CUT_METHODS[args.method].takes_blocks:
            raise DepthlensError(
                "--blocks names the removed set; use it with --method "
                f"{' or '.join(takers)}, not {args.method}"
            )
        blocks = parse_blocks(args.blocks)
        check_removed(blocks, max(blocks) + 3)  # order and repeats; range once loaded
        if blocks[0] == 0:
            raise DepthlensError(
                "--blocks includes block 0: replaceme-multi merges each run "
                "into the block before it, and block 0 has none; keep it"
            )
    if args.beam < 1:
        raise DepthlensError(f"--beam must be at least 1, got {args.beam}")
    if args.objective == "acceptance" and (given_method is not None or args.blocks):
        raise DepthlensError(
            "--objective acceptance chooses plain removals by top-1 agreement itself; "
            f"leave out --method {args.method} and --blocks"
        )


def make_plan(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load the model and calibration windows and compute the plan."""
    from depthlens.cut import CalibrationOptions, CutOptions, plan_cut

    lm = load_model_from_args(args)
    windows = load_windows_from_args(args, lm.tokenizer)
    if args.objective == "acceptance":
        from depthlens.speculate.plan import plan_by_acceptance

        status(f"planning by top-1 agreement on {windows.n_tokens} calibration tokens …")
        return lm, plan_by_acceptance(lm, windows, args.remove, args.ratio, progress=not args.quiet)
    opts = CalibrationOptions(
        include_first_token=args.include_first_token,
        holdout_every=args.holdout_every,
        fit_include_first_token=not args.fit_exclude_first_token,
        ridge=args.ridge,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        cos_epochs=args.cos_epochs,
        cos_lr=args.cos_lr,
        seed=args.seed,
    )
    from depthlens.cut.search import SearchOptions

    search = SearchOptions(
        beam=args.beam,
        score_windows=args.score_windows,
        fit_tokens=args.search_fit_tokens,
        objective=args.objective,
        prefilter=args.prefilter,
        refit=not args.no_refit,
        rescore=args.rescore,
    )
    blocks = parse_blocks(args.blocks) if args.blocks is not None else None
    status(f"planning {args.method} on {windows.n_tokens} calibration tokens …")
    plan = plan_cut(
        lm,
        windows,
        args.method,
        CutOptions(
            n=args.remove,
            ratio=args.ratio,
            calibration=opts,
            last_token_only=args.last_token_only,
            greedy_windows=args.greedy_windows,
            seed=args.seed,
            search=search,
            blocks=blocks,
            multi_mode=args.multi_mode,
            **budget_options(args, windows.seq_len),
        ),
        progress=not args.quiet,
    )
    return lm, plan


def _rank() -> int:
    from depthlens.dist import rank_world

    return rank_world()[0]


def run_plan(args: argparse.Namespace) -> int:
    """Print the plan preview; optionally write its JSON."""
    from depthlens.cut.plan_io import maps_path, save_plan
    from depthlens.io import check_output_path

    _validate(args)
    out = check_output_path(args.output, args.overwrite) if args.output else None
    if out:
        check_output_path(maps_path(out), args.overwrite)
    _lm, plan = make_plan(args)
    if _rank() != 0:
        return 0
    print(plan.preview())
    if out:
        written = save_plan(plan, out)
        status(f"wrote {', '.join(map(str, written))}")
    return 0


def _saved_plan(args: argparse.Namespace) -> tuple[Any, Any]:
    """``prune --plan``: read the plan (and its maps) first, then load the model it is for."""
    from depthlens.cut import load_plan
    from depthlens.results import check_same_model

    plan = load_plan(args.plan)
    lm = load_model_from_args(args)
    check_same_model(plan.model, lm.identity(), f"the plan {args.plan} and the model")
    return lm, plan


def run_prune(args: argparse.Namespace) -> int:
    """Plan, apply, save; with --eval-data print perplexity before and after."""
    from depthlens.cut import apply_cut_, save_pruned
    from depthlens.data import check_disjoint, load_text
    from depthlens.evaluate.perplexity import evaluate_perplexity
    from depthlens.io import check_output_path

    _validate(args)
    check_output_path(args.output, args.overwrite)
    if args.eval_data:
        check_disjoint(
            load_text(args.data, text_field=args.text_field),
            load_text(args.eval_data, text_field=args.text_field),
        )
    t0 = time.perf_counter()
    lm, plan = _saved_plan(args) if args.plan else make_plan(args)
    if _rank() != 0:  # under torchrun the sums are all-reduced; rank 0 writes
        return 0
    print(plan.preview())
    before = None
    if args.eval_data:
        ev = load_windows_from_args(
            args, lm.tokenizer, data=args.eval_data, max_tokens=args.eval_tokens
        )
        before = evaluate_perplexity(lm, ev, batch_size=args.batch_size)
    apply_cut_(lm, plan)
    out = save_pruned(lm, plan, args.output, overwrite=args.overwrite)
    if before is not None:
        after = evaluate_perplexity(lm, ev, batch_size=args.batch_size)
        print(
            f"perplexity on {args.eval_data} ({after['n_tokens']} tokens): "
            f"{before['ppl']:.2f} -> {after['ppl']:.2f} "
            f"(x{after['ppl'] / before['ppl']:.2f})"
        )
    status(f"wrote {out} ({lm.num_layers} blocks) in {time.perf_counter() - t0:.1f} s")
    return 0
