"""``depthlens demo``: the whole loop on one model.

profile → report → plan → prune → reload with plain transformers in a fresh process →
evaluate (perplexity and speed, before vs after) → report with the cut results.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

from depthlens.cli.common import status
from depthlens.models.registry import DEFAULT_MODEL

_RELOAD = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
tok = AutoTokenizer.from_pretrained(d)
model = AutoModelForCausalLM.from_pretrained(d)
ids = tok("The capital of France is", return_tensors="pt")
out = model.generate(**ids, max_new_tokens=16, do_sample=False, use_cache=True)
print(model.config.num_hidden_layers, repr(tok.decode(out[0][ids["input_ids"].shape[1]:])))
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help="profile -> report -> plan -> prune -> reload -> evaluate, on the default model",
        description="Run the whole depthlens loop on one model and write every artefact.",
        epilog="example: depthlens demo smollm2-135m --out out/demo --remove 4",
    )
    # MODEL first, as in every command; --model is the old spelling, still accepted.
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        metavar="MODEL",
        help=f"packaged name, local HF dir, .gguf or hub id ({DEFAULT_MODEL})",
    )
    p.add_argument("--model", dest="model_opt", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default="out/demo", help="output folder (out/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--method", default="replaceme-ls", help="cut method (replaceme-ls)")
    p.add_argument("--remove", type=int, default=4, help="blocks to remove (4)")
    p.add_argument("--max-tokens", type=int, default=8192, help="profile/calibration tokens")
    p.add_argument("--lens-tokens", type=int, default=1024, help="tokens the lens sees (1024)")
    p.add_argument("--eval-tokens", type=int, default=4096, help="wiki-eval tokens (4096)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run every step, writing into a temporary folder that becomes ``--out`` at the end."""
    from depthlens.errors import DepthlensError
    from depthlens.io import atomic_dir, check_output_path
    from depthlens.registry import unknown_choice

    if args.model and args.model_opt and args.model != args.model_opt:
        raise DepthlensError(
            f"two models given ({args.model}, --model {args.model_opt}); "
            "pass one, first: depthlens demo MODEL"
        )
    args.model = args.model or args.model_opt or DEFAULT_MODEL
    from depthlens.cut import method_names

    if args.method not in method_names():
        raise DepthlensError(unknown_choice("method", args.method, method_names()))
    if args.remove < 1:
        raise DepthlensError(f"--remove must be at least 1, got {args.remove}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = check_output_path(args.out, args.overwrite)
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        _steps(args, tmp, final=out)
    status(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is in {out}/")
    print(f"open {out / 'report.html'} in a browser")
    return 0


def _steps(args: argparse.Namespace, tmp: Path, final: Path) -> None:
    from depthlens.cli.table import profile_table, render_table
    from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_plan, save_pruned
    from depthlens.data import check_disjoint, load_text, make_windows
    from depthlens.evaluate.compare import compare, compare_table
    from depthlens.models import load_model
    from depthlens.profiling import ProfileOptions, profile
    from depthlens.report import write_report

    status(f"[1/6] loading {args.model} …")
    lm = load_model(args.model)
    calib, held = load_text("wiki-calib"), load_text("wiki-eval")
    check_disjoint(calib, held)
    windows = make_windows(calib, lm.tokenizer, seq_len=512, max_tokens=args.max_tokens)
    status(f"[2/6] profiling {windows.n_tokens} wiki-calib tokens …")
    prof = profile(
        lm, windows, ProfileOptions(lens_tokens=args.lens_tokens), progress=not args.quiet
    )
    prof.save(tmp / "profile.json")
    print(profile_table(prof))
    status(f"[3/6] planning: {args.method}, remove {args.remove} blocks …")
    # The profile above already holds the angular distances the span selection needs.
    plan = plan_cut(
        lm, windows, args.method, CutOptions(n=args.remove), progress=not args.quiet, profile=prof
    )
    save_plan(plan, tmp / "plan.json")  # and plan.T.safetensors: prune --plan can redo it
    print(plan.preview())
    status("[4/6] applying the cut and saving an ordinary checkpoint …")
    original = copy.deepcopy(lm)
    apply_cut_(lm, plan)
    save_pruned(lm, plan, tmp / "pruned")
    status("[5/6] reloading with plain transformers in a fresh process and generating …")
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD, str(tmp / "pruned")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reloading the pruned checkpoint failed:\n{proc.stderr[-2000:]}")
    print(f"plain transformers reload: {proc.stdout.strip()}")
    status(f"[6/6] evaluating before vs after on {args.eval_tokens} held-out wiki-eval tokens …")
    pruned = load_model(str(tmp / "pruned"))
    pruned.ref = str(final / "pruned")  # where it will be once the folder is renamed
    ev = make_windows(held, lm.tokenizer, seq_len=512, max_tokens=args.eval_tokens)
    res = compare(
        [("original", original), (f"{args.method}-{args.remove}", pruned)],
        ev,
        progress=not args.quiet,
    )
    res.save(tmp / "compare.json")
    head, rows = compare_table(res)
    print(render_table(head, rows))
    write_report(
        [tmp / "profile.json", tmp / "plan.json", tmp / "compare.json"],
        tmp / "report.html",
        overwrite=True,
    )
    status(f"wrote {final}/report.html, profile.json, plan.json, compare.json, pruned/")
