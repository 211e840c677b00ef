"""ReplaceMe against plain removal of the SAME blocks, paired over held-out windows.

For each n: plan ``replaceme-ls`` (cheapest angular span, least-squares map folded into
the block before it) on wiki-calib, then evaluate on wiki-eval (disjoint) (a) the cut with
its map and (b) the same blocks removed with no map. Reported per n: each model's
perplexity as a multiple of the original's, and the ratio (a)/(b) — below 1 means the map
helps — each with a seeded paired percentile-bootstrap 95% interval over windows (the
windows are resampled together for all models, see bench/block_removal_ci.py).

    PYTHONPATH=src python bench/replaceme_vs_removal.py smollm2-135m --ns 4,8 \
        -o bench/results/replaceme_vs_removal_smollm2.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from block_removal_ci import ratio_ci  # noqa: E402  (bench/ is on sys.path)

from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut
from depthlens.cut.apply import remove_blocks_
from depthlens.data import check_disjoint, load_text, make_windows
from depthlens.evaluate.perplexity import window_nll
from depthlens.models.loading import load_model


def _row(
    lm: Any, calib: Any, evals: Any, base: torch.Tensor, counts: torch.Tensor, n: int
) -> dict[str, Any]:
    """Plan replaceme-ls at ``n`` and compare it with removing its blocks bare."""
    t = time.perf_counter()
    cal = CalibrationOptions(batch_size=2)
    plan = plan_cut(lm, calib, "replaceme-ls", CutOptions(n=n, calibration=cal))
    mapped = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
    apply_cut_(mapped, plan)
    nll_map, _ = window_nll(mapped, evals, batch_size=1)
    del mapped
    bare = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
    remove_blocks_(bare, plan.removed)
    nll_bare, _ = window_nll(bare, evals, batch_size=1)
    del bare
    stats = {
        "replaceme_ls": ratio_ci(base, nll_map, counts),
        "plain_removal": ratio_ci(base, nll_bare, counts),
        "map_over_plain": ratio_ci(nll_bare, nll_map, counts),
    }
    lo, hi = stats["map_over_plain"][1:]
    verdict = "map helps" if hi < 1 else "map hurts" if lo > 1 else "no difference"
    row = {
        "n": n,
        "removed": list(plan.removed),
        "merge_into": plan.merge_into,
        **{k: {"ratio": v[0], "ci95": [v[1], v[2]]} for k, v in stats.items()},
        "verdict": verdict,
        "seconds": time.perf_counter() - t,
    }
    print(
        f"n={n} removed {plan.removed}: map x{stats['replaceme_ls'][0]:.3f} "
        f"plain x{stats['plain_removal'][0]:.3f} map/plain x{stats['map_over_plain'][0]:.3f} "
        f"[{lo:.3f}, {hi:.3f}] {verdict}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ns", default="4,8")
    ap.add_argument("--calib-tokens", type=int, default=4096)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared CPU: 1)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model(args.model)
    calib_src, eval_src = load_text("wiki-calib"), load_text("wiki-eval")
    check_disjoint(calib_src, eval_src)
    tok = lm.tokenizer
    calib = make_windows(calib_src, tok, seq_len=args.seq_len, max_tokens=args.calib_tokens)
    evals = make_windows(eval_src, tok, seq_len=args.seq_len, max_tokens=args.eval_tokens)
    base, counts = window_nll(lm, evals, batch_size=1)
    rows = [_row(lm, calib, evals, base, counts, int(n)) for n in args.ns.split(",")]
    out = {
        "model": args.model,
        "num_layers": lm.num_layers,
        "calibration": calib.to_dict(),
        "data": evals.to_dict(),
        "n_windows": len(evals),
        "n_tokens": int(counts.sum()),
        "base_ppl": math.exp(float(base.sum() / counts.sum())),
        "interval": "paired percentile bootstrap over windows, 4000 resamples, seed 0",
        "load_average": os.getloadavg(),
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
