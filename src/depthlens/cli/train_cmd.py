"""``depthlens train`` and ``depthlens study depth``: the residual-scheme lab."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from depthlens.cli.common import add_output_args, status
from depthlens.train.schemes import SCHEMES  # light: the records, no torch

if TYPE_CHECKING:
    from depthlens.train.config import TrainConfig
    from depthlens.train.result import StudyResult

TRAIN_EXAMPLE = """examples:
  depthlens train --depth 8 --width 128 --scheme lns --tokens 2000000 -o runs/lns-L8
  torchrun --nproc-per-node 2 -m depthlens train --depth 8 --scheme pre-ln -o runs/pre-L8
  depthlens profile runs/lns-L8 --data wiki-eval -o runs/lns-L8/profile.json
"""

STUDY_EXAMPLE = """examples:
  depthlens study depth -o study/          # pre-ln vs lns at depths 4, 8, 16, 3 seeds (CPU)
  depthlens study depth --preset paper --device cuda -o study-paper/   # 12/24 blocks, 50M tok
  depthlens study depth --schemes pre-ln,lns,post-ln,deepnorm,rezero,scaled -o study6/
"""


def _add_shape_args(p: argparse.ArgumentParser, d: dict[str, object]) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--width", type=int, default=d["width"], help=f"hidden size ({d['width']})")
    g.add_argument("--heads", type=int, default=d["heads"], help=f"attention heads ({d['heads']})")
    g.add_argument(
        "--context",
        type=int,
        default=d["context"],
        help=f"tokens per training sequence ({d['context']})",
    )
    g.add_argument(
        "--drop-path",
        type=float,
        default=0.0,
        help="stochastic depth: drop rate rising linearly to P at the last block (0)",
    )
    g.add_argument(
        "--vocab-size",
        type=int,
        default=d["vocab_size"],
        help=f"BPE vocabulary trained on --data ({d['vocab_size']})",
    )
    g.add_argument(
        "--data",
        default="wiki-calib",
        help="training text: wiki, wiki-calib, news, a .txt/.jsonl file (wiki-calib)",
    )
    g.add_argument("--eval-data", default="wiki-eval", help="held-out text (wiki-eval)")
    g.add_argument("--text-field", default="text", help="field of a .jsonl record (text)")
    g.add_argument(
        "--tokens",
        type=int,
        default=d["tokens"],
        help=f"training budget in tokens per run ({d['tokens']})",
    )
    g.add_argument("--lr", type=float, default=d["lr"], help=f"peak learning rate ({d['lr']})")
    g.add_argument(
        "--warmup",
        type=int,
        default=d["warmup"],
        help=f"linear warmup steps, then cosine to lr/10 ({d['warmup']})",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=d["batch_size"],
        help=f"sequences per step over all processes ({d['batch_size']})",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of init, data order, drop-path (0)")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    add_output_args(p, "output folder", required=True, quiet_help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")  # study depth too


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``study``."""
    _register_train(sub)
    _register_study(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from depthlens.train.config import TrainConfig

    t = sub.add_parser(
        "train",
        help="train a small LM with a residual scheme (pre-ln, lns, …)",
        description="Train a decoder-only LM from scratch with one residual "
        "scheme; saves a checkpoint every depthlens command reads.",
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--depth", type=int, default=TrainConfig.depth, help="blocks (4)")
    t.add_argument(
        "--scheme", default=TrainConfig.scheme, help=f"{', '.join(SCHEMES)} ({TrainConfig.scheme})"
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help="save a resumable checkpoint every N steps (rerun the command to resume)",
    )
    _add_shape_args(t, dataclasses.asdict(TrainConfig()))
    t.set_defaults(func=run_train)


def _register_study(sub: argparse._SubParsersAction) -> None:
    """Add ``study depth`` (the grid, seeds and preset flags, then the shape flags)."""
    from depthlens.train.study import StudyConfig

    s = sub.add_parser(
        "study",
        help="train every (scheme, depth) and measure how each uses depth",
        epilog=STUDY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = s.add_subparsers(dest="study", metavar="STUDY", required=True)
    d = ssub.add_parser(
        "depth",
        help="the depth-scaling study (Curse of Depth)",
        epilog=STUDY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    base = StudyConfig()
    d.add_argument(
        "--depths",
        default=",".join(map(str, base.depths)),
        help=f"depths to train ({','.join(map(str, base.depths))})",
    )
    d.add_argument(
        "--schemes",
        default=",".join(base.schemes),
        help=f"comma-separated schemes ({','.join(base.schemes)}); all: {','.join(SCHEMES)}",
    )
    d.add_argument(
        "--measure-tokens",
        type=int,
        default=base.measure_tokens,
        help=f"held-out tokens for profile and removal costs ({base.measure_tokens})",
    )
    d.add_argument(
        "--seeds",
        default=str(len(base.seeds)),
        help=f"seeds per (scheme, depth): a count or a list such as 0,1,2 ({len(base.seeds)}); "
        "figures are mean ± 95%% interval over them",
    )
    d.add_argument(
        "--preset",
        choices=("cpu", "paper"),
        default="cpu",
        help="cpu: the flags below (default); paper: 12 and 24 blocks, width 256, 50M tokens "
        "per run (a GPU configuration, docs/TRAIN.md); --data, --eval-data, --seeds and "
        "--device still apply",
    )
    d.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs trained at once in CPU worker processes (2; 1 = in this process)",
    )
    _add_shape_args(d, dataclasses.asdict(base.base))
    d.set_defaults(func=run_study_cmd)


def _train_config(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    from depthlens.train.config import TrainConfig

    return TrainConfig(
        width=args.width,
        heads=args.heads,
        context=args.context,
        drop_path=args.drop_path,
        vocab_size=args.vocab_size,
        data=args.data,
        eval_data=args.eval_data,
        text_field=args.text_field,
        tokens=args.tokens,
        lr=args.lr,
        warmup=args.warmup,
        batch_size=args.batch_size,
        seed=args.seed,
        **extra,
    )


def run_train(args: argparse.Namespace) -> int:
    """Validate, then train one model."""
    from depthlens.dist import rank_world
    from depthlens.train.run import train

    cfg = _train_config(args, depth=args.depth, scheme=args.scheme)
    cfg.validate(rank_world()[1])
    res = train(
        cfg,
        args.output,
        overwrite=args.overwrite,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        progress=not args.quiet,
    )
    if rank_world()[0] == 0 and not args.quiet:
        status(
            f"saved {res.saved_as} to {res.out}: held-out loss {res.eval_loss:.4f}, "
            f"{res.tokens_per_s:,.0f} tokens/s"
        )
    return 0


def run_study_cmd(args: argparse.Namespace) -> int:
    """Validate the whole grid, then train and measure every run."""
    from depthlens.train.schemes import parse_schemes
    from depthlens.train.study import (
        PAPER_PRESET,
        StudyConfig,
        parse_depths,
        run_study,
        seeds_arg,
    )

    schemes = tuple(s.name for s in parse_schemes(args.schemes))
    study = StudyConfig(
        depths=parse_depths(args.depths),
        schemes=schemes,
        seeds=seeds_arg(args.seeds),
        base=_train_config(args),  # type: ignore[arg-type]
        measure_tokens=args.measure_tokens,
    )
    if args.preset == "paper":
        base = dataclasses.replace(
            PAPER_PRESET.base, data=args.data, eval_data=args.eval_data, text_field=args.text_field
        )
        study = dataclasses.replace(PAPER_PRESET, seeds=study.seeds, base=base)
    study.validate()
    if args.jobs < 1:
        from depthlens.errors import DepthlensError

        raise DepthlensError(f"--jobs must be at least 1, got {args.jobs}")
    result = run_study(
        study,
        args.output,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.quiet,
        jobs=args.jobs,
    )
    if not args.quiet:
        for r in result.runs:
            unused = r["unused_depth"]
            if r.get("diverged"):
                status(f"{r['scheme']:>9} L={r['depth']:<3} diverged")
                continue
            status(
                f"{r['scheme']:>9} L={r['depth']:<3} seed {r.get('seed', 0)} held-out loss "
                f"{r['eval_loss']:.4f}  "
                f"unused depth {'–' if unused is None else f'{100 * unused:.0f}%'}"
            )
        _print_intervals(result)
        status(f"wrote {args.output}/study.json and {args.output}/report.html")
    return 0


def _print_intervals(result: StudyResult) -> None:
    """Mean ± 95% interval of the loss per (scheme, depth), and the differences called."""
    from depthlens.train.seeds import fmt_interval

    for e in result.summary:
        status(
            f"{e['scheme']:>9} L={e['depth']:<3} {e['n_seeds']} seeds: held-out loss "
            f"{fmt_interval(e['eval_loss'])}, unused depth "
            f"{fmt_interval(e['unused_depth'], 0, 100)}%"
        )
    for d in result.differences:
        sig = [f"L={r['depth']} {r['figure']}" for r in d["rows"] if r["significant"]]
        status(f"{d['a']} vs {d['b']}: intervals separate for {', '.join(sig) or 'nothing'}")
