"""``depthlens eval`` and ``depthlens compare``: a thin shell over :mod:`depthlens.evaluate`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from depthlens.cli.common import (
    add_data_args,
    add_model_args,
    load_model_from_args,
    load_windows_from_args,
    status,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``compare``."""
    e = sub.add_parser("eval", help="perplexity, speed and multiple choice of one model",
                       description="Evaluate a model or a pruned checkpoint directory.",
                       epilog="example: depthlens eval out/pruned --data wiki-eval")  # fmt: skip
    add_model_args(e)
    _eval_args(e)
    e.add_argument("--mc", nargs="*", default=None, metavar="TASK",
                   help="BIG-bench multiple-choice tasks (needs bigbench installed); "
                   "no TASK = the default two")  # fmt: skip
    e.add_argument("--mc-examples", type=int, default=200, help="examples per task (200)")
    e.set_defaults(func=run_eval)
    c = sub.add_parser("compare", help="compare models on the same windows, with ratios",
                       description="Evaluate several models in one process on the same "
                       "windows; ratios are to the first model.",
                       epilog="example: depthlens compare smollm2-135m out/pruned "
                       "--data wiki-eval -o compare.json")  # fmt: skip
    c.add_argument("models", nargs="+", metavar="REF", help="models; the first is the baseline")
    add_model_args(c, positional=False)
    _eval_args(c)
    c.add_argument("--calib-data", default=None,
                   help="refuse if this calibration text overlaps --data")
    c.set_defaults(func=run_compare)


def _eval_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p, default="wiki-eval")
    g = p.add_argument_group("evaluation")
    g.add_argument("--batch-size", type=int, default=4, help="windows per forward (4)")
    g.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    g.add_argument("--prompt-len", type=int, default=256, help="prefill tokens (256)")
    g.add_argument("--decode-tokens", type=int, default=32, help="greedy decode steps (32)")
    g.add_argument("--repeats", type=int, default=3, help="timed repeats, median (3)")
    p.add_argument("-o", "--output", help="write the JSON result here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _strict(res: dict[str, Any]) -> Any:
    """Strict JSON: non-JSON values as strings, an overflowing ppl (inf) or NaN as null."""
    from depthlens.results import clean_json

    return clean_json(json.loads(json.dumps(res, default=str)))


def _speed_opts(args: argparse.Namespace) -> dict[str, Any]:
    return {"prompt_len": args.prompt_len, "decode_tokens": args.decode_tokens,
            "repeats": args.repeats}  # fmt: skip


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate one model; print and optionally write JSON."""
    from depthlens.evaluate.compare import compare
    from depthlens.evaluate.mc import (
        DEFAULT_TASKS,
        bigbench_task_path,
        evaluate_multiple_choice,
        load_task_json,
    )
    from depthlens.io import atomic_write_json, check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    lm = load_model_from_args(args)
    windows = load_windows_from_args(args, lm.tokenizer)
    res = compare([(args.model, lm)], windows, speed=not args.no_speed,
                  speed_options=_speed_opts(args), batch_size=args.batch_size)  # fmt: skip
    row = res["models"][0]
    print(f"{args.model}: {row['num_layers']} blocks; perplexity {row['ppl']:.3f} on "
          f"{row['n_tokens']} tokens of {args.data}")  # fmt: skip
    if row["prefill_tok_s"] is not None:
        print(f"prefill {row['prefill_tok_s']:.0f} tok/s, decode {row['decode_tok_s']:.1f} tok/s")
    if args.mc is not None:
        res["mc"] = {}
        for task in args.mc or DEFAULT_TASKS:
            ex = load_task_json(bigbench_task_path(task), args.mc_examples)
            r = evaluate_multiple_choice(lm, ex)
            res["mc"][task] = r
            print(f"{task}: accuracy {r['acc']:.3f} (chance {r['chance']:.3f}, "
                  f"{r['n_examples']} examples)")  # fmt: skip
    if out:
        atomic_write_json(out, _strict(res))
        status(f"wrote {out}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Compare models on the same windows; print the table and optionally write JSON."""
    from depthlens.cli.table import render_table
    from depthlens.data import check_disjoint, load_text
    from depthlens.evaluate.compare import compare, compare_table
    from depthlens.io import atomic_write_json, check_output_path

    out = check_output_path(args.output, args.overwrite) if args.output else None
    if args.calib_data:
        check_disjoint(load_text(args.calib_data, text_field=args.text_field),
                       load_text(args.data, text_field=args.text_field))  # fmt: skip
    models = [(ref, load_model_from_args(args, ref)) for ref in args.models]
    windows = load_windows_from_args(args, models[0][1].tokenizer)
    status(f"comparing {len(models)} models on {windows.n_tokens} tokens of {args.data} …")
    res = compare(models, windows, speed=not args.no_speed, speed_options=_speed_opts(args),
                  batch_size=args.batch_size)  # fmt: skip
    head, rows = compare_table(res)
    print(render_table(head, rows))
    if out:
        atomic_write_json(out, _strict(res))
        status(f"wrote {out}")
    return 0
