"""``depthlens heal``: a thin shell over :func:`depthlens.heal.heal_checkpoint`."""

from __future__ import annotations

import argparse

from depthlens.cli.common import add_batch_size_arg, add_output_args, status

EXAMPLE = (
    "example: depthlens heal out/pruned --teacher smollm2-135m --data wiki-calib "
    "--steps 50 --eval-data wiki-eval -o out/healed"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``heal``."""
    p = sub.add_parser(
        "heal",
        help="distil the original into a cut model (short, merged back)",
        description="Short distillation of a cut checkpoint towards the model "
        "it was cut from (KL on next-token distributions, optional MSE on the "
        "residual stream at the cut points), training LoRA adapters and/or the "
        "merged projections, merged back into an ordinary checkpoint.",
        epilog=EXAMPLE,
    )
    p.add_argument("model", metavar="PRUNED", help="cut checkpoint directory")
    p.add_argument("--teacher", required=True, help="the original model (REF)")
    p.add_argument("--data", default="wiki-calib", help="training text (wiki-calib)")
    p.add_argument("--max-tokens", type=int, default=8192, help="training tokens (8192)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per window (512)")
    p.add_argument("--steps", type=int, required=True, metavar="K", help="optimizer steps")
    add_batch_size_arg(p, default=2, what="windows per step")
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (2e-4)")
    p.add_argument("--train", default="lora", help="lora (default), merged or both")
    p.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (8)")
    p.add_argument(
        "--mse-weight",
        type=float,
        default=0.0,
        help="weight of the residual-stream MSE at the cut points (0 = KL only)",
    )
    p.add_argument(
        "--eval-data",
        default=None,
        help="print held-out perplexity before/after on this text, e.g. wiki-eval",
    )
    p.add_argument("--eval-tokens", type=int, default=4096, help="tokens for --eval-data")
    p.add_argument("--seed", type=int, default=0, help="seed for the window order")
    add_output_args(p, "healed checkpoint directory", required=True, quiet_help="no progress bar")
    p.set_defaults(func=run_heal)


def _check_was_cut(ref: str) -> None:
    """Healing restores what a cut lost: a checkpoint never cut has nothing to heal.

    Without this, an uncut model was "healed" into a full copy of itself.
    """
    from pathlib import Path

    from depthlens.errors import DepthlensError
    from depthlens.models.manifest import MANIFEST, read_manifest
    from depthlens.models.registry import PACKAGED

    p = Path(ref).expanduser()
    never_cut = (
        (p.is_dir() and read_manifest(p) is None) or ref in PACKAGED or ref.endswith(".gguf")
    )
    if never_cut:
        raise DepthlensError(
            f"{ref} was never cut (no {MANIFEST} from `depthlens prune`); heal the folder "
            "`depthlens prune -o` wrote, with its original model as --teacher"
        )


def run_heal(args: argparse.Namespace) -> int:
    """Heal, print before/after perplexity and the cost."""
    from depthlens.heal import HealOptions, check_options, heal_checkpoint

    opts = HealOptions(
        steps=args.steps,
        lr=args.lr,
        train=args.train,
        lora_rank=args.lora_rank,
        mse_weight=args.mse_weight,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    check_options(opts)
    _check_was_cut(args.model)
    rec = heal_checkpoint(
        args.model,
        args.teacher,
        opts=opts,
        out=args.output,
        data=args.data,
        max_tokens=args.max_tokens,
        seq_len=args.seq_len,
        eval_data=args.eval_data,
        eval_tokens=args.eval_tokens,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    ev = rec.get("eval")
    if ev:
        print(
            f"perplexity on {ev['data']} ({ev['n_tokens']} tokens): {ev['ppl_before']:.2f} "
            f"-> {ev['ppl_after']:.2f} after healing"
        )
    print(
        f"healing: {args.steps} steps, {rec['tokens']} tokens, {rec['seconds']:.1f} s, "
        f"{rec['trainable_params']:,} trainable parameters; KL {rec['first_kl']:.4f} -> "
        f"{rec['last_kl']:.4f}"
    )
    status(f"wrote {rec['path']}")
    return 0
