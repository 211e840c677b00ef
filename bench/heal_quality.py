"""Benchmark: heal one cut of SmolLM2 and measure wiki/news perplexity before and after.

Cuts ``--blocks`` with replaceme-multi (one LS map per run, sequential targets), then
distils the original into it (``depthlens.heal``), and evaluates the original, the cut
and the healed cut on the same wiki-eval and news windows as ``prune_quality.py`` (paired
per-window 95% intervals of the ratio to the original). Writes ``<out>.{json,md}``.

    python bench/heal_quality.py --blocks 12-19 --steps 40 --out bench/results/heal_n8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from prune_quality import ratio_stats  # noqa: E402

from depthlens.cli.cut_cmd import parse_blocks  # noqa: E402
from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut  # noqa: E402
from depthlens.data import load_text, make_windows  # noqa: E402
from depthlens.evaluate.perplexity import window_nll  # noqa: E402
from depthlens.heal import CutSites, HealOptions, heal_  # noqa: E402
from depthlens.models import load_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--blocks", required=True)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train", default="blocks")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--calib-tokens", type=int, default=8192)
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--news-tokens", type=int, default=2048)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ref = load_model(a.model)
    tok = ref.tokenizer
    calib = make_windows(load_text("wiki-calib"), tok, seq_len=a.seq_len, max_tokens=a.calib_tokens)
    evals = {
        "wiki": make_windows(
            load_text("wiki-eval"), tok, seq_len=a.seq_len, max_tokens=a.eval_tokens
        ),
        "news": make_windows(
            load_text("news"), tok, seq_len=a.seq_len, max_tokens=a.news_tokens or None
        ),
    }
    base = {k: window_nll(ref, w) for k, w in evals.items()}
    cut, plan = replaceme_multi_cut(a.model, calib, a.blocks)
    rows = {"cut": {k: ratio_stats(window_nll(cut, w), base[k]) for k, w in evals.items()}}
    opts = HealOptions(steps=a.steps, lr=a.lr, train=a.train, batch_size=1, seq_len=a.seq_len)
    rec = heal_(cut, ref, calib, opts, CutSites.of_plan(plan))
    rows["healed"] = {k: ratio_stats(window_nll(cut, w), base[k]) for k, w in evals.items()}
    res = {
        "kind": "depthlens.bench.heal_quality",
        "options": vars(a),
        "removed": list(plan.removed),
        "rows": rows,
        "heal": {k: v for k, v in rec.to_dict().items() if k != "log"},
        "kl_log": [r["kl"] for r in rec.log],
        "load_average": os.getloadavg(),
        "seconds": time.perf_counter() - t0,
    }
    Path(a.out + ".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    md = [
        f"{a.model}: replaceme-multi removing {list(plan.removed)}, healed {a.steps} steps "
        f"({rec.healing_tokens} tokens, {rec.seconds:.0f} s, {a.train}, lr {a.lr}; load "
        f"average {res['load_average'][0]:.1f}).",
        "",
        *ratio_table(rows),
    ]
    Path(a.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def replaceme_multi_cut(model: str, calib, blocks: str):
    """Load ``model`` and cut ``blocks`` with replaceme-multi; (cut model, plan)."""
    cut = load_model(model)
    plan = plan_cut(
        cut,
        calib,
        "replaceme-multi",
        CutOptions(blocks=parse_blocks(blocks), calibration=CalibrationOptions(batch_size=2)),
    )
    apply_cut_(cut, plan)
    return cut, plan


def ratio_table(rows: dict) -> list[str]:
    """Markdown rows: each model's wiki and news perplexity and ratio to the original."""
    md = [
        "| model | wiki ppl | wiki x orig [95% CI] | news ppl | news x orig [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        w, n = r["wiki"], r["news"]
        md.append(
            f"| {name} | {w['ppl']:.2f} | {w['ratio']:.3f} [{w['ratio_lo']:.3f}, "
            f"{w['ratio_hi']:.3f}] | {n['ppl']:.2f} | {n['ratio']:.3f} "
            f"[{n['ratio_lo']:.3f}, {n['ratio_hi']:.3f}] |"
        )
    return md


if __name__ == "__main__":
    main()
