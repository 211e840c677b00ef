"""Benchmark: every cut method on SmolLM2-135M, n in {4, 8} of 30 blocks.

Held-out wiki perplexity (wiki-eval), out-of-domain news perplexity, BIG-bench multiple
choice when installed, and prefill/decode speed-up measured against the ideal, all in one
process on the same windows. Speed depends only on the architecture (all methods removing
n blocks give the same shapes), so it is measured once per n, side by side with the
original. SLEB (greedy-loss) is sequential: its n=4 plan is the first 4 rounds of n=8.

    python bench/prune_quality.py            # writes bench/results/prune_quality.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from depthlens.cut import METHODS, CalibrationOptions, apply_cut_, plan_cut
from depthlens.cut.plan import CutPlan
from depthlens.data import TokenWindows, check_disjoint, load_text, make_windows
from depthlens.evaluate.compare import cut_info
from depthlens.evaluate.flops import flops_per_token
from depthlens.evaluate.mc import (
    DEFAULT_TASKS,
    bigbench_available,
    bigbench_task_path,
    evaluate_multiple_choice,
    load_task_json,
)
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.evaluate.speed import measure_speed
from depthlens.models import load_model
from depthlens.profiling import ProfileOptions, profile

OUT = Path(__file__).parent / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--ns", default="4,8")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--calib-tokens", type=int, default=8192)
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--greedy-tokens", type=int, default=64, help="SLEB calibration tokens")
    p.add_argument("--mc-examples", type=int, default=100)
    p.add_argument("--speed-prompt", type=int, default=128)
    p.add_argument("--speed-decode", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="interleaved speed rounds")
    p.add_argument("--out", default=str(OUT / "prune_quality"))
    return p.parse_args()


def _evaluate(lm: Any, evals: dict[str, Any], mc: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, w in evals.items():
        row[f"ppl_{name}"] = evaluate_perplexity(lm, w)["ppl"]
    for task, examples in mc.items():
        row[f"mc_{task}"] = evaluate_multiple_choice(lm, examples)["acc"]
    return row


def main() -> None:
    a = _args()
    torch.manual_seed(0)
    ns = [int(x) for x in a.ns.split(",")]
    t_start = time.perf_counter()
    lm = load_model(a.model)
    calib_src, wiki_src = load_text("wiki-calib"), load_text("wiki-eval")
    news_src = load_text("news")
    check_disjoint(calib_src, wiki_src)
    calib = make_windows(calib_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=a.calib_tokens)
    evals = {
        "wiki": make_windows(wiki_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=a.eval_tokens),
        "news": make_windows(news_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=a.eval_tokens),
    }
    mc: dict[str, Any] = {}
    if bigbench_available():
        mc = {t: load_task_json(bigbench_task_path(t), a.mc_examples) for t in DEFAULT_TASKS}
    opts = CalibrationOptions()
    prof = profile(lm, calib, ProfileOptions(lens=False, n_max=max(ns)), progress=False)
    print(f"profiled {calib.n_tokens} calibration tokens in {time.perf_counter() - t_start:.0f} s",
          flush=True)
    speed_opts = dict(prompt_len=a.speed_prompt, decode_tokens=a.speed_decode, repeats=a.repeats)
    base = {"label": "original", "method": None, "n": 0, "removed": [],
            **_evaluate(lm, evals, mc)}  # fmt: skip
    flops0 = flops_per_token(lm, a.seq_len)["total"]
    archs: dict[int, Any] = {0: lm}  # one model per n: speed depends only on the shapes
    rows = [base]
    g = a.greedy_tokens
    gw = TokenWindows(calib.input_ids[:1, :g], calib.attention_mask[:1, :g],
                      {**calib.identity, "subset": f"first window, {a.greedy_tokens} tokens"})
    greedy_full: CutPlan | None = None
    for n in ns:
        for method in METHODS:
            t0 = time.perf_counter()
            cut = load_model(a.model)
            if method == "greedy-loss":
                if greedy_full is None:
                    greedy_full = plan_cut(cut, gw, method=method, n=max(ns), greedy_windows=1)
                order = [r["removed"] for r in greedy_full.selection["rounds"]][:n]
                plan = dataclasses.replace(greedy_full, removed=tuple(sorted(order)),
                                           options={**greedy_full.options, "n": n})
            else:
                plan = plan_cut(cut, calib, method=method, n=n, calibration=opts, profile=prof)
            apply_cut_(cut, plan)
            archs.setdefault(n, cut)
            row = {"label": f"{method} n={n}", "method": method, "n": n,
                   "removed": cut_info(cut)["removed"], **_evaluate(cut, evals, mc),
                   "ideal_speedup": flops0 / flops_per_token(cut, a.seq_len)["total"],
                   "fit": plan.fit}  # fmt: skip
            rows.append(row)
            print(f"{row['label']:<22} removed {row['removed']} wiki {row['ppl_wiki']:.2f} "
                  f"news {row['ppl_news']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    speeds = _interleaved_speed(archs, speed_opts, a.repeats)
    for row in rows:
        for k in ("prefill", "decode"):
            row[f"{k}_speedup"] = speeds[row["n"]][f"{k}_tok_s"] / speeds[0][f"{k}_tok_s"]
        row.setdefault("ideal_speedup", 1.0)
        row["ppl_wiki_ratio"] = row["ppl_wiki"] / base["ppl_wiki"]
    result = {
        "kind": "depthlens.bench.prune_quality", "model": a.model,
        "calibration": {"data": "wiki-calib", "n_tokens": calib.n_tokens, "seq_len": a.seq_len},
        "eval": {k: {"n_tokens": w.n_tokens, "n_windows": len(w)} for k, w in evals.items()},
        "greedy_tokens": a.greedy_tokens, "mc_tasks": list(mc) or "bigbench not installed",
        "speed": {str(k): v for k, v in speeds.items()}, "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t_start, "rows": rows,
    }  # fmt: skip
    md = _markdown(result, list(mc))
    Path(a.out + ".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    Path(a.out + ".md").write_text(md)
    print(md)


def _interleaved_speed(archs: dict[int, Any], opts: dict[str, Any], rounds: int) -> dict:
    """Measure every architecture in turn, ``rounds`` times; keep each one's fastest run.

    Interleaving puts the original and the cut models under the same machine load (the
    machine is shared); the fastest run is the least disturbed one.
    """
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in archs}
    for _ in range(rounds):
        for n, model in archs.items():
            runs[n].append(measure_speed(model, **{**opts, "repeats": 1}))
    return {n: {k: max(r[k] for r in rs) for k in ("prefill_tok_s", "decode_tok_s")}
            for n, rs in runs.items()}  # fmt: skip


def _markdown(result: dict[str, Any], tasks: list[str]) -> str:
    ev = result["eval"]
    lines = [
        f"SmolLM2-135M ({result['model']}), 30 blocks. Calibration: "
        f"{result['calibration']['n_tokens']} wiki-calib tokens; evaluation: "
        f"{ev['wiki']['n_tokens']} wiki-eval and {ev['news']['n_tokens']} news tokens "
        f"(windows of {result['calibration']['seq_len']}); SLEB on {result['greedy_tokens']} "
        f"tokens; {result['threads']} CPU threads on a shared machine; "
        f"{result['seconds']:.0f} s in all.",
        "",
        "| method | n | removed | wiki ppl | x orig | news ppl | MC "
        + " | MC ".join(t.split("/")[0] for t in tasks or ["(BIG-bench)"])
        + " | prefill x | decode x | ideal x |",
        "|---|---|---|---|---|---|" + "---|" * max(1, len(tasks)) + "---|---|---|",
    ]
    for r in result["rows"]:
        mc = [f"{r[f'mc_{t}']:.3f}" for t in tasks] or ["not installed"]
        lines.append(
            f"| {r['method'] or 'original'} | {r['n']} | {r['removed']} | {r['ppl_wiki']:.2f} | "
            f"{r['ppl_wiki_ratio']:.2f} | {r['ppl_news']:.2f} | {' | '.join(mc)} | "
            f"{r['prefill_speedup']:.2f} | {r['decode_speedup']:.2f} | {r['ideal_speedup']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
