"""Benchmark: the healing curve of SmolLM2-135M with 8 of 30 blocks cut.

Cuts ``--blocks`` (default 12-19: what greedy-ls removes at n = 8 in
bench/results/prune_quality.json) with replaceme-multi (one least-squares map for the run,
merged into block 11), then heals it with ``depthlens.heal`` on text streamed from
wiki-calib under a token budget, evaluating held-out wiki perplexity every ``--eval-every``
steps (the curve). The original, the cut and the healed cut are then compared on the same
wiki-eval and news windows (paired per-window 95% intervals of the ratio to the original,
as in prune_quality.py). Resumable: rerun the same command after an interruption.
Writes ``<out>.json`` and ``<out>.md``.

    nice -n 10 python bench/heal_curve.py --tokens 24576 --out bench/results/heal_curve
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from heal_quality import ratio_table, replaceme_multi_cut  # noqa: E402
from prune_quality import ratio_stats  # noqa: E402

from depthlens.cut.save import cut_manifest  # noqa: E402
from depthlens.data import load_text, make_windows  # noqa: E402
from depthlens.evaluate.perplexity import window_nll  # noqa: E402
from depthlens.heal import CutSites, HealOptions, TextStream, heal_  # noqa: E402
from depthlens.heal.state import drop_state  # noqa: E402
from depthlens.models import load_model  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--blocks", default="12-19")
    p.add_argument("--tokens", type=int, default=24576, help="healing token budget")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train", default="blocks")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=6, help="steps per curve point")
    p.add_argument("--curve-tokens", type=int, default=2048, help="wiki-eval tokens per point")
    p.add_argument("--calib-tokens", type=int, default=8192, help="tokens for the LS map")
    p.add_argument("--eval-tokens", type=int, default=8192, help="final wiki-eval tokens")
    p.add_argument("--news-tokens", type=int, default=4096, help="final news tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/heal_curve")
    p.add_argument(
        "--partial",
        action="store_true",
        help="write <out>.partial.{json,md} from an unfinished run's saved curve (no healing)",
    )
    return p.parse_args()


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    if a.partial:
        _partial(a)
        return
    t0 = time.perf_counter()
    ref = load_model(a.model)
    tok = ref.tokenizer
    wiki_eval = load_text("wiki-eval")
    calib = make_windows(load_text("wiki-calib"), tok, seq_len=a.seq_len, max_tokens=a.calib_tokens)
    final = {
        "wiki": make_windows(wiki_eval, tok, seq_len=a.seq_len, max_tokens=a.eval_tokens),
        "news": make_windows(load_text("news"), tok, seq_len=a.seq_len, max_tokens=a.news_tokens),
    }
    curve_w = make_windows(wiki_eval, tok, seq_len=a.seq_len, max_tokens=a.curve_tokens, seed=1)
    base = {k: window_nll(ref, w) for k, w in final.items()}
    s0, n0 = window_nll(ref, curve_w)
    a.original_curve_nll = float(s0.sum() / n0.sum())  # recorded with the options
    cut, plan = replaceme_multi_cut(a.model, calib, a.blocks)
    rows = {"cut": {k: ratio_stats(window_nll(cut, w), base[k]) for k, w in final.items()}}
    print("cut", {k: round(v["ratio"], 3) for k, v in rows["cut"].items()}, flush=True)
    opts = HealOptions(
        tokens=a.tokens,
        seq_len=a.seq_len,
        batch_size=a.batch_size,
        lr=a.lr,
        train=a.train,
        lora_rank=a.lora_rank,
        eval_every=a.eval_every,
    )
    stream = TextStream(load_text("wiki-calib"), tok, a.seq_len, seed=0)
    state = Path(a.out).parent / f".{Path(a.out).name}.heal-state"
    res = heal_(
        cut,
        ref,
        stream,
        opts,
        CutSites.of(cut_manifest(cut, plan)),
        evals=curve_w,
        state_dir=state,
        progress=True,
    )
    rows["healed"] = {k: ratio_stats(window_nll(cut, w), base[k]) for k, w in final.items()}
    _write(a, plan, rows, res, t0)
    drop_state(state)


def _write(a, plan, rows, res, t0) -> None:
    curve_base = res.curve[0]["ppl"] if res.curve else None
    out = {
        "kind": "depthlens.bench.heal_curve",
        "options": vars(a),
        "removed": list(plan.removed),
        "rows": rows,
        "curve": res.curve,
        "tokens_to_90pct_gain": res.tokens_to_fraction(0.9),
        "heal": {k: v for k, v in res.to_dict().items() if k not in ("log", "curve", "teacher")},
        "kl_log": [r["kl"] for r in res.log],
        "load_average": os.getloadavg(),
        "threads": a.threads,
        "seconds": time.perf_counter() - t0,
    }
    Path(a.out + ".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    md = [
        f"{a.model}: replaceme-multi removing {list(plan.removed)} (8 of 30 blocks), healed "
        f"with {res.healing_tokens:,} streamed wiki-calib tokens ({res.steps} steps of "
        f"{a.batch_size}x{a.seq_len}, --train {a.train}, rank {a.lora_rank}, peak lr {a.lr}, "
        f"cosine), {res.seconds:.0f} s on {a.threads} CPU threads, load average "
        f"{out['load_average'][0]:.1f}.",
        "",
        *ratio_table(rows),
    ]
    md += ["", "Healing curve (held-out wiki, the curve's own windows):", ""]
    md += ["| healing tokens | held-out ppl | x cut | x original |", "|---|---|---|---|"]
    for p in res.curve:
        x_orig = math.exp(p["nll"] - a.original_curve_nll)
        md.append(
            f"| {p['tokens']:,} | {p['ppl']:.2f} | {p['ppl'] / curve_base:.3f} | {x_orig:.3f} |"
        )
    md += ["", f"tokens to reach 90% of the final gain: {out['tokens_to_90pct_gain']}"]
    Path(a.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _partial(a: argparse.Namespace) -> None:
    """The curve of an unfinished run (its saved state), against the original's perplexity
    on the same curve windows: what a run stopped for lack of time reached so far."""
    state = Path(a.out).parent / f".{Path(a.out).name}.heal-state" / "heal-state.pt"
    blob = torch.load(state, map_location="cpu", weights_only=True)
    ref = load_model(a.model)
    curve_w = make_windows(
        load_text("wiki-eval"), ref.tokenizer, seq_len=a.seq_len, max_tokens=a.curve_tokens, seed=1
    )
    s, n = window_nll(ref, curve_w)
    orig = float(s.sum() / n.sum())
    curve = [{**p, "x_orig": math.exp(p["nll"] - orig)} for p in blob["curve"]]
    out = {
        "kind": "depthlens.bench.heal_curve.partial",
        "options": vars(a),
        "original_curve_ppl": math.exp(orig),
        "steps_done": int(blob["step"]),
        "tokens_done": int(blob["tokens"]),
        "seconds": float(blob["seconds"]),
        "curve": curve,
        "load_average": os.getloadavg(),
    }
    Path(a.out + ".partial.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    md = [
        f"Unfinished run: {out['steps_done']} steps, {out['tokens_done']:,} healing tokens, "
        f"{out['seconds']:.0f} s; original perplexity on the curve windows "
        f"{out['original_curve_ppl']:.2f}.",
        "",
        "| healing tokens | held-out ppl | x original |",
        "|---|---|---|",
    ]
    md += [f"| {p['tokens']:,} | {p['ppl']:.2f} | {p['x_orig']:.3f} |" for p in curve]
    Path(a.out + ".partial.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
