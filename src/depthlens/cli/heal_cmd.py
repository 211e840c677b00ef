"""``depthlens heal``: a thin shell over :func:`depthlens.heal.heal_checkpoint`."""

from __future__ import annotations

import argparse

from depthlens.cli.common import DTYPE_CHOICES, add_batch_size_arg, add_output_args, status

EXAMPLE = (
    "example: depthlens heal out/pruned --teacher smollm2-135m --data wiki-calib "
    "--tokens 200000 --eval-data wiki-eval --patience 3 -o out/healed"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``heal``."""
    p = sub.add_parser(
        "heal",
        help="distil the original into a cut model (token budget, held-out curve)",
        description="Distil the model a checkpoint was cut from into it: KL on next-token "
        "distributions (optional MSE on the residual stream at the cut points) over a token "
        "budget streamed from --data, with a cosine schedule, a held-out perplexity curve "
        "(--eval-data), early stopping and resumable state (rerun the same command). LoRA "
        "is merged back: the output is an ordinary checkpoint.",
        epilog=EXAMPLE,
    )
    p.add_argument("model", metavar="PRUNED", help="cut checkpoint directory (depthlens prune)")
    p.add_argument("--teacher", required=True, help="the model the cut was made from (REF)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="wiki-calib", help="healing text, streamed (wiki-calib)")
    g.add_argument("--tokens", type=int, default=65536, help="healing token budget (65536)")
    g.add_argument("--steps", type=int, default=None, help="budget in steps instead of tokens")
    g.add_argument("--seq-len", type=int, default=256, help="tokens per window (256)")
    g.add_argument(
        "--eval-data", default="wiki-eval", help="held-out text of the curve (wiki-eval; none)"
    )
    g.add_argument("--eval-tokens", type=int, default=4096, help="held-out tokens (4096)")
    g.add_argument("--seed", type=int, default=0, help="seed of the document order (0)")
    t = p.add_argument_group("training")
    add_batch_size_arg(t, default=4, what="windows per step")
    t.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (5e-4)")
    t.add_argument("--warmup", type=float, default=0.05, help="warm-up fraction (0.05)")
    t.add_argument(
        "--train",
        default="lora",
        help="lora (default: blocks next to each cut), "
        "blocks (LoRA on every block) or maps (the merged linear maps only)",
    )
    t.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (8)")
    t.add_argument("--neighbours", type=int, default=1, help="--train lora: blocks per side (1)")
    t.add_argument("--mse-weight", type=float, default=0.0, help="residual MSE weight (0)")
    t.add_argument("--eval-every", type=int, default=0, help="steps per curve point (0: 10 points)")
    t.add_argument(
        "--patience", type=int, default=0, help="early stop after N flat points (0: off)"
    )
    t.add_argument(
        "--checkpoint-every", type=int, default=0, help="steps per saved state (0: each point)"
    )
    d = p.add_argument_group("device")
    d.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    d.add_argument(
        "--dtype", default="float32", choices=DTYPE_CHOICES, help="weights' dtype (float32)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
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
    """Heal, print the held-out curve and the cost."""
    from depthlens.heal import HealOptions, heal_checkpoint

    opts = HealOptions(
        tokens=args.tokens,
        steps=args.steps,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        train=args.train,
        lora_rank=args.lora_rank,
        neighbours=args.neighbours,
        mse_weight=args.mse_weight,
        eval_every=args.eval_every,
        patience=args.patience,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    opts.validate()
    _check_was_cut(args.model)
    res = heal_checkpoint(
        args.model,
        args.teacher,
        opts=opts,
        out=args.output,
        data=args.data,
        eval_data=None if args.eval_data.lower() == "none" else args.eval_data,
        eval_tokens=args.eval_tokens,
        dtype=args.dtype,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    for pt in res.curve:
        print(f"  {pt['tokens']:>10,} tokens  held-out ppl {pt['ppl']:.3f}")
    if res.ppl_before is not None and res.ppl_after is not None:
        t90 = res.tokens_to_fraction(0.9)
        print(
            f"perplexity on {args.eval_data}: {res.ppl_before:.2f} -> {res.ppl_after:.2f} after "
            f"healing ({res.best['tokens'] if res.best else 0:,} tokens kept; 90% of the gain "
            f"by {t90 if t90 is not None else '-'} tokens; stopped: {res.stopped})"
        )
    print(
        f"healing: {res.steps} steps, {res.healing_tokens:,} tokens, {res.seconds:.1f} s, "
        f"{res.trainable_params:,} trainable parameters ({res.train}); KL "
        f"{res.first_kl or 0:.4f} -> {res.last_kl or 0:.4f}"
    )
    status(f"wrote {args.output}")
    return 0
