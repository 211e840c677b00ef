"""``depthlens eval`` and ``depthlens compare``: a thin shell over :mod:`depthlens.evaluate`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depthlens.cli.common import (
    add_batch_size_arg,
    add_data_args,
    add_model_args,
    add_output_args,
    load_data_from_args,
    load_model_and_windows,
    load_model_from_args,
    load_windows_from_args,
    safe_text,
    status,
)
from depthlens.errors import DepthlensError

if TYPE_CHECKING:
    from depthlens.evaluate.compare import CompareResult


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``compare``."""
    e = sub.add_parser(
        "eval",
        help="perplexity, speed and multiple choice of one model",
        description="Evaluate a model or a pruned checkpoint directory.",
        epilog="example: depthlens eval out/pruned --data wiki-eval",
    )
    add_model_args(e)
    _eval_args(e)
    e.add_argument(
        "--mc",
        nargs="*",
        default=None,
        metavar="TASK",
        help="BIG-bench multiple-choice tasks (needs bigbench installed); "
        "no TASK = the default two",
    )
    e.add_argument("--mc-examples", type=int, default=200, help="examples per task (200)")
    e.set_defaults(func=run_eval)
    c = sub.add_parser(
        "compare",
        help="compare models on the same windows, with ratios",
        description="Evaluate several models in one process on the same "
        "windows; ratios are to the first model. Speed is timed "
        "interleaved (A B A B …) and reported as the median ratio with a "
        "95%% interval and a verdict.",
        epilog="example: depthlens compare smollm2-135m out/pruned "
        "--data wiki-eval -o compare.json",
    )
    c.add_argument("models", nargs="+", metavar="MODEL", help="models; the first is the baseline")
    add_model_args(c, positional=False)
    _eval_args(c)
    c.add_argument(
        "--calib-data", default=None, help="refuse if this calibration text overlaps --data"
    )
    c.set_defaults(func=run_compare)


def _eval_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p, default="wiki-eval")
    g = p.add_argument_group("evaluation")
    add_batch_size_arg(g)
    g.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    g.add_argument("--prompt-len", type=int, default=256, help="prefill tokens (256)")
    g.add_argument("--decode-tokens", type=int, default=32, help="greedy decode steps (32)")
    g.add_argument(
        "--rounds",
        "--repeats",
        dest="rounds",
        type=int,
        default=10,
        help="timed rounds, each timing every model once, interleaved (10)",
    )
    g.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds (2)")
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="pin torch to this many threads while timing (default: as is)",
    )
    add_output_args(p, "write the JSON result here")


def _speed_opts(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "prompt_len": args.prompt_len,
        "decode_tokens": args.decode_tokens,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "threads": args.threads,
        "seed": args.seed,
    }


def validate_eval_args(args: argparse.Namespace) -> Any:
    """Every check that needs no model, so bad input fails before a slow load.

    Returns the loaded --data text (read now, so a bad file fails now).
    """
    if args.batch_size < 1:
        raise DepthlensError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if not args.no_speed:
        for flag, v, low in (
            ("--prompt-len", args.prompt_len, 1),
            ("--decode-tokens", args.decode_tokens, 1),
            ("--rounds", args.rounds, 1),
            ("--warmup", args.warmup, 0),
            ("--threads", args.threads, 1),
        ):
            if v is not None and v < low:
                raise DepthlensError(f"{flag} must be ≥ {low}, got {v}")
    if getattr(args, "mc_examples", 1) < 1:
        raise DepthlensError(f"--mc-examples must be ≥ 1, got {args.mc_examples}")
    return load_data_from_args(args)


def _mc_paths(args: argparse.Namespace) -> dict[str, Path]:
    """BIG-bench task files, found before any model is loaded."""
    from depthlens.evaluate.mc import DEFAULT_TASKS, bigbench_task_path

    if args.mc is None:
        return {}
    return {task: bigbench_task_path(task) for task in (args.mc or DEFAULT_TASKS)}


def _write(out: Path | None, res: CompareResult) -> None:
    if out:
        res.save(out)
        status(f"wrote {out}")


def _say_batch(args: argparse.Namespace, models: list[Any], windows: Any) -> None:
    """Print how --batch-size was capped or split to fit memory (refused if one window won't)."""
    from depthlens.evaluate.batch_memory import fit_eval_batch

    notes = {fit_eval_batch(lm, windows, args.batch_size)[1] for lm in models} - {None}
    for note in sorted(str(n) for n in notes):
        status(note)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate one model; print and optionally write JSON."""
    from depthlens.evaluate.compare import compare
    from depthlens.evaluate.mc import evaluate_multiple_choice, load_task_json
    from depthlens.io import check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    source = validate_eval_args(args)
    tasks = _mc_paths(args)
    lm, windows = load_model_and_windows(args, source)
    _say_batch(args, [lm], windows)
    res = compare(
        [(args.model, lm)],
        windows,
        speed=not args.no_speed,
        speed_options=_speed_opts(args),
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    row = res.models[0]
    print(
        f"{safe_text(args.model)}: {row.num_layers} blocks; perplexity {row.ppl:.3f} "
        f"on {row.n_tokens} tokens of {safe_text(args.data)}"
    )
    if row.prefill_tok_s is not None:
        print(
            f"prefill {row.prefill_tok_s:.0f} tok/s, decode {row.decode_tok_s:.1f} tok/s "
            f"(median of {args.rounds} runs)"
        )
    mc = {}  # the multiple-choice scores, written beside the comparison
    for task, path in tasks.items():
        r = evaluate_multiple_choice(lm, load_task_json(path, args.mc_examples))
        mc[task] = json.loads(json.dumps(r, default=str))
        print(
            f"{task}: accuracy {r['acc']:.3f} (chance {r['chance']:.3f}, "
            f"{r['n_examples']} examples)"
        )
    _write(out, dataclasses.replace(res, mc=mc))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Compare models on the same windows; print the table and optionally write JSON."""
    from depthlens.cli.table import render_table
    from depthlens.data import check_disjoint, load_text
    from depthlens.evaluate.compare import compare, compare_table
    from depthlens.io import check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    source = validate_eval_args(args)
    if args.calib_data:
        check_disjoint(load_text(args.calib_data, text_field=args.text_field), source)
    models = [(ref, load_model_from_args(args, ref)) for ref in args.models]
    windows = load_windows_from_args(args, models[0][1].tokenizer, source=source)
    _say_batch(args, [lm for _, lm in models], windows)
    status(
        f"comparing {len(models)} models on {windows.n_tokens} tokens of {safe_text(args.data)} …"
    )
    res = compare(
        models,
        windows,
        speed=not args.no_speed,
        speed_options=_speed_opts(args),
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    head, rows = compare_table(res)
    print(safe_text(render_table(head, [[str(c) for c in r] for r in rows])))
    _write(out, res)
    return 0
