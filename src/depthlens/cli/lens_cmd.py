"""``depthlens lens train|eval|report`` (tuned lens) and ``depthlens exit`` (early exit)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from depthlens.cli.common import (
    Default,
    add_batch_size_arg,
    add_data_args,
    add_lens_kernel_arg,
    add_model_args,
    add_output_args,
    load_model_and_windows,
    load_windows_from_args,
    status,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lens`` (with its own subcommands) and ``exit``."""
    lens = sub.add_parser(
        "lens",
        help="train and evaluate a tuned lens (Belrose et al. 2023)",
        description="Tuned lens: one affine translator per block, trained "
        "on KL(p_L ‖ p_l) of the frozen model.",
    )
    lsub = lens.add_subparsers(dest="lens_command", metavar="ACTION")
    _register_train(lsub)
    _register_eval(lsub)
    _register_report(lsub)
    _register_export(lsub)
    lens.set_defaults(func=lambda _a: lens.print_help() or 0)
    _register_exit(sub)


def _model_and_data(p: argparse.ArgumentParser, data: str) -> None:
    """The model, --data (default ``data``) and shorter windows than the other commands'."""
    add_model_args(p)
    add_data_args(p, default=data)
    p.set_defaults(seq_len=Default(128), max_tokens=2048)


def _lens_reader(p: argparse.ArgumentParser, lens_help: str) -> None:
    """Model, held-out text and --lens of a command that reads a model through a lens."""
    _model_and_data(p, "wiki-eval")
    p.add_argument("--lens", default="logit", help=lens_help)
    add_batch_size_arg(p)


def _outputs(p: argparse.ArgumentParser, what: str) -> None:
    add_output_args(p, f"write the {what} here", required=True, quiet_help="no progress bar")


def _register_train(lsub: argparse._SubParsersAction) -> None:
    t = lsub.add_parser(
        "train",
        help="train a tuned lens on a frozen model",
        epilog="example: depthlens lens train smollm2-135m -o lens/   (= --data wiki-calib "
        "--max-tokens 4096 --seq-len 128 --init lstsq --optimizer adam --lr 1e-4 --steps 12)",
    )
    _model_and_data(t, "wiki-calib")
    # The default budget is where SmolLM2-135M's held-out KL curve flattened
    # (docs/TUNED_LENS.md, "Has the training converged?"): a least-squares start on
    # 4,096 tokens, then 12 Adam steps of one 128-token window.
    t.set_defaults(max_tokens=4096)
    g = t.add_argument_group("training")
    g.add_argument("--steps", type=int, default=12, help="optimiser steps (12; 0 = one pass)")
    add_batch_size_arg(g, default=1, what="windows per step")
    g.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="adam",
        help="Adam (default) or SGD with Nesterov momentum (the reference's)",
    )
    g.add_argument(
        "--lr", type=float, default=None, help="learning rate (default 1e-3 for SGD, 1e-4 for Adam)"
    )
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    g.add_argument("--weight-decay", type=float, default=1e-3, help="weight decay (1e-3)")
    g.add_argument("--warmup", type=float, default=0.1, help="share of warm-up steps (0.1)")
    g.add_argument(
        "--init",
        choices=("identity", "lstsq"),
        default="lstsq",
        help="lstsq (default): a ridge fit h_L ≈ h_l + A_l h_l + b_l on all --max-tokens "
        "before the KL steps; identity: the reference's start (step 0 = logit lens)",
    )
    h = t.add_argument_group("held-out curve (recorded in lens.json as heldout_kl)")
    h.add_argument("--eval-data", default="wiki-eval", help="held-out text (wiki-eval)")
    h.add_argument(
        "--eval-tokens", type=int, default=256, help="held-out tokens; 0 = no curve (256)"
    )
    h.add_argument(
        "--eval-every", type=int, default=0, help="steps between measurements (0 = ~8 per run)"
    )
    _outputs(t, "lens folder")
    t.set_defaults(func=run_train)


def _register_eval(lsub: argparse._SubParsersAction) -> None:
    e = lsub.add_parser(
        "eval",
        help="per-block KL of the logit lens and a tuned lens on the same tokens",
        epilog="example: depthlens lens eval smollm2-135m --lens tuned:lens/ --data wiki-eval "
        "--max-tokens 2048 -o kl_wiki.json",
    )
    _lens_reader(e, "logit or tuned:DIR (compared to logit)")
    add_lens_kernel_arg(e)
    _outputs(e, "lens-eval JSON")
    e.set_defaults(func=run_eval)


def _register_report(lsub: argparse._SubParsersAction) -> None:
    r = lsub.add_parser(
        "report",
        help="HTML page with the logit and tuned lens curves of lens-eval results",
        epilog="example: depthlens lens report kl_wiki.json kl_news.json -o lens.html",
    )
    r.add_argument("results", nargs="+", help="lens-eval JSON files (same model)")
    add_output_args(r, "write the HTML page here", required=True, quiet_help=None)
    r.set_defaults(func=run_report)


def _register_export(lsub: argparse._SubParsersAction) -> None:
    x = lsub.add_parser(
        "export",
        help="write a trained lens in the tuned-lens package's layout (config.json + params.pt)",
        epilog="example: depthlens lens export lens/ --format tuned-lens -o lens-tl/  "
        "(read back by tuned-lens's TunedLens.from_model_and_pretrained, or by depthlens "
        "--lens tuned:lens-tl/)",
    )
    x.add_argument("lens_dir", metavar="DIR", help="a `depthlens lens train` output folder")
    x.add_argument("--format", default="tuned-lens", choices=("tuned-lens",), help="tuned-lens")
    x.add_argument("-o", "--output", required=True, help="folder to write (created)")
    x.add_argument("--overwrite", action="store_true", help="replace files already there")
    x.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Convert a depthlens lens folder to the tuned-lens layout."""
    from pathlib import Path

    from depthlens.errors import DepthlensError
    from depthlens.tuned.interop import TL_CONFIG, TL_PARAMS
    from depthlens.tuned.lens import export_lens

    out = Path(args.output)
    if not args.overwrite and any((out / n).exists() for n in (TL_CONFIG, TL_PARAMS)):
        raise DepthlensError(f"{out} already holds a tuned-lens folder; pass --overwrite")
    info = export_lens(args.lens_dir, out)
    status(f"wrote {info['n_layers']} translators (d = {info['d_model']}) to {out}")
    return 0


def _register_exit(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser(
        "exit",
        help="early-exit quality/compute curves (CALM) from a lens",
        description="For each rule and threshold: mean exit depth, FLOPs saved, agreement "
        "with the full model's top-1 and the perplexity of the exited predictions.",
        epilog="example: depthlens exit smollm2-135m --lens tuned:lens/ --data wiki-eval "
        "--max-tokens 2048 -o exit.json",
    )
    _lens_reader(x, "logit (default) or tuned:DIR")
    from depthlens.exit.rules import EXIT_RULES

    for rule in EXIT_RULES.values():
        x.add_argument(f"--{rule.name}", default=None, metavar=rule.metavar, help=rule.help)
    x.add_argument("--min-depth", type=int, default=1, help="first depth that may exit (1)")
    _outputs(x, "exit JSON")
    x.set_defaults(func=run_exit_cmd)


def run_train(args: argparse.Namespace) -> int:
    """Validate, load, train, save."""
    from depthlens.io import check_output_path
    from depthlens.tuned.train import TrainOptions, train_and_save

    check_output_path(args.output.rstrip("/") or args.output, args.overwrite)
    opts = TrainOptions(
        steps=args.steps,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        batch_size=args.batch_size,
        init=args.init,
        seed=args.seed,
        eval_every=args.eval_every,
    )
    opts.validate()
    lm, windows = load_model_and_windows(args)
    heldout = None
    if args.eval_tokens > 0:
        heldout = load_windows_from_args(
            args, lm.tokenizer, data=args.eval_data, max_tokens=max(args.eval_tokens, args.seq_len)
        )
    status(f"training a tuned lens on {windows.n_tokens} tokens …")
    result = train_and_save(
        lm,
        windows,
        args.output,
        opts,
        overwrite=args.overwrite,
        progress=not args.quiet,
        heldout=heldout,
    )
    rec = result.training
    first, last = rec.loss_first_step, rec.loss_last_steps
    status(
        f"trained {rec.steps} steps on {rec.tokens_seen} tokens in "
        f"{rec.seconds:.0f} s; mean KL {sum(first) / len(first):.3f} (first step) / "
        f"{sum(last) / len(last):.3f} nats (last steps; other windows); wrote {args.output}"
    )
    curve = rec.heldout_kl
    points = zip(curve.tokens, curve.mean_kl(), strict=True) if curve is not None else ()
    for tok, kl in points:
        status(f"  held-out mean KL after {tok:>6} training tokens: {kl:.3f} nats")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Validate, load, compare the lenses, write."""
    from depthlens.io import check_output_path
    from depthlens.metrics.catalog.lens import LENS_KL
    from depthlens.metrics.readout import check_lens_arg
    from depthlens.tuned.evaluate import evaluate_lens

    out = check_output_path(args.output, args.overwrite)
    check_lens_arg(args.lens)
    lm, windows = load_model_and_windows(args)
    t0 = time.perf_counter()
    result = evaluate_lens(
        lm,
        windows,
        args.lens,
        batch_size=args.batch_size,
        kernel=args.lens_kernel,
        progress=not args.quiet,
    )
    result.save(out)
    for name, v in result.lenses.items():
        kl = ", ".join(f"{x:.2f}" if x is not None else "-" for x in v[LENS_KL.name])
        print(f"{name:>6} KL per block: {kl}")
    status(f"evaluated {result.n_tokens} tokens in {time.perf_counter() - t0:.0f} s; wrote {out}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Read lens-eval results and write the comparison page."""
    from depthlens.io import atomic_write_text, check_output_path
    from depthlens.report.tuned_page import lens_report_html
    from depthlens.tuned.evaluate import load_evals

    out = check_output_path(args.output, args.overwrite)
    atomic_write_text(out, lens_report_html(load_evals(args.results)))
    status(f"wrote {out}")
    return 0


def _exit_line(p: dict[str, Any]) -> str:
    """One curve point for the terminal."""
    from depthlens.metrics.catalog.exit import (
        EXIT_AGREE,
        EXIT_DEPTH,
        EXIT_FLOPS,
        EXIT_FLOPS_NET,
        EXIT_PPL,
    )

    return (
        f"{p['label']:>18}  depth {p[EXIT_DEPTH.name]:5.2f}  saved "
        f"{100 * p[EXIT_FLOPS.name]:5.1f}% (net {100 * p[EXIT_FLOPS_NET.name]:6.1f}%)"
        f"  agree {100 * p[EXIT_AGREE.name]:5.1f}%  ppl "
        f"{p[EXIT_PPL.name] or float('nan'):.2f}"
    )


def run_exit_cmd(args: argparse.Namespace) -> int:
    """Validate (thresholds first), load, sweep, write."""
    from depthlens.exit.api import check_sweeps, run_exit
    from depthlens.exit.rules import RULES, parse_thresholds
    from depthlens.io import check_output_path
    from depthlens.metrics.readout import check_lens_arg

    out = check_output_path(args.output, args.overwrite)
    sweeps: dict[str, tuple[float, ...]] = {k: parse_thresholds(k, getattr(args, k)) for k in RULES}
    check_sweeps(sweeps, args.min_depth)
    check_lens_arg(args.lens)
    lm, windows = load_model_and_windows(args)
    result = run_exit(
        lm,
        windows,
        args.lens,
        sweeps,
        min_depth=args.min_depth,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    result.save(out)
    if not args.quiet:
        for points in result.rules.values():
            for p in points:
                print(_exit_line(p))
    status(f"wrote {out}")
    return 0
