"""Benchmark: every cut method on one model (SmolLM2-135M, Gemma-3-270M, Qwen2.5-Coder-0.5B
or any other), n blocks' worth of cut, unhealed and healed, plus a generative check.

Held-out wiki perplexity (wiki-eval, >= 32k tokens) and out-of-domain news perplexity (all
of it), with paired per-window standard errors of the ratio to the original (the same
windows for every model), predicted and measured speed-ups, and each plan's calibration
cost. Designed for 2 shared CPU cores:

- the original's per-window NLL is computed once; every model is evaluated once;
- one profile pass feeds the angular / block-influence selections of every n;
- greedy-loss (SLEB), greedy-ls and beam-ls are nested searches: one run to max(n) gives
  the plan of every smaller n (the step-k state of a greedy or beam search is its k-plan);
- ``units-ls`` (blocks and sublayers) at "n" removes the FLOP share of n blocks (at
  ``--seq-len``); one search to the largest n gives every smaller n (its trace's prefix);
- every finished row goes to ``<out>.partial.json`` at once, and a rerun with the same
  settings skips the rows already there (``--fresh`` to start over);
- a method the model's family cannot take is listed as refused, with the reason.

    python bench/prune_quality.py       # writes bench/results/prune_quality.{json,md}
    python bench/prune_quality.py --model gemma3-270m --ns 4 --methods angular,units-ls \
        --heal all --out bench/results/prune_quality_gemma3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import prune_gen  # noqa: E402  (bench/ is on sys.path when this file runs)
import prune_report  # noqa: E402
import prune_units  # noqa: E402
import torch
from prune_eval import ratio_stats  # noqa: E402, F401  (heal_quality imports it here)

from depthlens.cut import METHODS, CalibrationOptions, CutOptions, apply_cut_, plan_cut
from depthlens.cut.apply import skip_removed_sublayers_
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.search import SearchOptions, search_removed
from depthlens.data import check_disjoint, load_text, make_windows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings, flops_per_token
from depthlens.evaluate.perplexity import window_nll
from depthlens.models import load_model
from depthlens.profiling import ProfileOptions, profile
from depthlens.results import clean_json

OUT = Path(__file__).parent / "results"
NESTED = ("greedy-loss", "greedy-ls", "beam-ls")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--ns", default="4,8,12")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--calib-tokens", type=int, default=16384)
    p.add_argument("--eval-tokens", type=int, default=32768, help="wiki-eval tokens")
    p.add_argument("--news-tokens", type=int, default=0, help="news tokens (0 = all)")
    p.add_argument("--greedy-tokens", type=int, default=256, help="SLEB calibration tokens")
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--score-windows", type=int, default=2)
    p.add_argument("--multi-mode", default="sequential")
    p.add_argument("--prefilter", type=int, default=0, help="search: candidates scored per step")
    p.add_argument("--no-refit", action="store_true", help="search: keep the search's maps")
    p.add_argument(
        "--heal", default="greedy-ls", help="methods whose cuts are healed: a,b | all | ''"
    )
    p.add_argument("--heal-steps", type=int, default=50)
    p.add_argument("--rescore", type=int, default=6, help="units-ls: units re-scored per step")
    p.add_argument("--gen-prompts", type=int, default=16, help="generative check prompts")
    p.add_argument("--gen-prompt-len", type=int, default=32)
    p.add_argument("--gen-tokens", type=int, default=32, help="tokens generated per prompt")
    p.add_argument("--speed-methods", default="greedy-ls,units-ls", help="rows timed (interleaved)")
    p.add_argument("--heal-tokens", type=int, default=8192)
    p.add_argument("--speed-rounds", type=int, default=5, help="0 = no speed measurement")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (models in float32)")
    p.add_argument("--batch-size", type=int, default=2, help="evaluation windows per forward")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=0,
        help="start no new row after this many seconds (0 = no limit); the rows "
        "done so far are still written, with the speed measurement",
    )
    p.add_argument("--out", default=str(OUT / "prune_quality"))
    p.add_argument("--fresh", action="store_true", help="ignore <out>.partial.json")
    return p.parse_args()


class Bench:
    """Shared state of one run: data, the original's NLL, finished rows."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.t0 = time.perf_counter()
        self.lm = load_model(a.model, device=a.device)
        tok = self.lm.tokenizer
        calib_src, wiki_src, news_src = (load_text(x) for x in ("wiki-calib", "wiki-eval", "news"))
        check_disjoint(calib_src, wiki_src)
        self.calib = make_windows(calib_src, tok, seq_len=a.seq_len, max_tokens=a.calib_tokens)
        self.evals = {
            "wiki": make_windows(wiki_src, tok, seq_len=a.seq_len, max_tokens=a.eval_tokens),
            "news": make_windows(
                news_src, tok, seq_len=a.seq_len, max_tokens=a.news_tokens or None
            ),
        }
        self.partial = Path(a.out + ".partial.json")
        self.key = {
            k: v
            for k, v in vars(a).items()
            if k
            not in (
                "fresh",
                "out",
                "ns",
                "methods",
                "speed_rounds",
                "batch_size",
                "max_seconds",
                "heal",
                "speed_methods",
            )
        }
        self.rows: dict[str, dict[str, Any]] = {}
        if self.partial.is_file() and not a.fresh:
            old = json.loads(self.partial.read_text())
            if old.get("key") == self.key:
                self.rows = old["rows"]
        self.base = {k: window_nll(self.lm, w, a.batch_size) for k, w in self.evals.items()}
        self.prompts = prune_gen.prompts(list(self.evals.values()), a.gen_prompts, a.gen_prompt_len)
        self.gen0 = prune_gen.continuations(self.lm, self.prompts, a.gen_tokens)
        self.failures: list[dict[str, str]] = []
        self.refused: list[dict[str, str]] = []
        self.timed: dict[str, Any] = {}
        self.flops0 = flops_per_token(self.lm, a.seq_len)["total"]
        self.searches: dict[str, Any] = {}
        self.maps: dict[str, Any] = {}

    def done(self, label: str) -> bool:
        return label in self.rows

    def add(self, label: str, lm: Any, extra: dict[str, Any]) -> None:
        """Evaluate ``lm`` on every eval set and store the row (and the partial file)."""
        t = time.perf_counter()
        row: dict[str, Any] = {"label": label, **extra}
        for k, w in self.evals.items():
            # the original: cached
            nll = self.base[k] if lm is self.lm else window_nll(lm, w, self.a.batch_size)
            row[k] = ratio_stats(nll, self.base[k])
        row["news_over_wiki"] = row["news"]["ratio"] / row["wiki"]["ratio"]
        if lm is not self.lm and self.a.gen_prompts > 0:
            got = prune_gen.continuations(lm, self.prompts, self.a.gen_tokens)
            row["generation"] = prune_gen.agreement(got, self.gen0)
        row["ideal_speedup"] = extra.get("ideal_speedup") or (
            self.flops0 / flops_per_token(lm, self.a.seq_len)["total"]
        )
        row["eval_seconds"] = time.perf_counter() - t
        self.rows[label] = row
        tmp = self.partial.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.key, "rows": self.rows}, default=str))
        os.replace(tmp, self.partial)
        print(
            f"{label:<24} removed {row.get('removed')} wiki x{row['wiki']['ratio']:.3f} "
            f"news x{row['news']['ratio']:.3f} ({row['eval_seconds']:.0f} s eval)",
            flush=True,
        )


def _plan(b: Bench, method: str, n: int, prof: Any) -> Any:
    """The plan of ``method`` at ``n`` on a fresh copy of the model (nested searches reused)."""
    a = b.a
    cut = load_model(a.model, device=a.device)
    opts = CalibrationOptions(batch_size=2)
    search = SearchOptions(
        beam=a.beam, score_windows=a.score_windows, prefilter=a.prefilter, refit=not a.no_refit
    )
    if method == "units-ls":
        return cut, prune_units.plan_units(b, cut, n, search, opts)
    if method in NESTED:
        if method not in b.searches:
            big = max(int(x) for x in a.ns.split(","))
            data = b.calib
            if method == "greedy-loss":
                g = a.greedy_tokens
                data = dataclasses.replace(
                    b.calib,
                    input_ids=b.calib.input_ids[:, :g],
                    attention_mask=b.calib.attention_mask[:, :g],
                )
                b.searches[method] = plan_cut(
                    cut, data, method, CutOptions(n=big, greedy_windows=1)
                )
            elif a.no_refit:
                sopts = dataclasses.replace(search, beam=1 if method == "greedy-ls" else a.beam)
                removed, sel, b.maps[method] = search_removed(cut, data, big, sopts)
                b.searches[method] = CutPlan(
                    envelope=plan_envelope(cut, data, {"search": dataclasses.asdict(sopts)}),
                    method=method,
                    num_layers=cut.num_layers,
                    removed=removed,
                    merge_into=None,
                    selection=clean_json(sel),
                    savings={},
                    fit={"mode": "search maps (joint, cached bf16 states, no refit)"},
                )
            else:
                b.searches[method] = plan_cut(
                    cut,
                    data,
                    method,
                    CutOptions(n=big, search=search, multi_mode=a.multi_mode, calibration=opts),
                )
        full = b.searches[method]
        if method == "greedy-loss":
            order = [r["removed"] for r in full.selection["rounds"]][:n]
            return cut, dataclasses.replace(full, removed=tuple(sorted(order)))
        by_n = full.selection["best_by_n"]
        blocks = tuple(by_n.get(str(n), by_n.get(n)))
        if a.no_refit:  # the search's own maps of its n-step set
            return cut, dataclasses.replace(
                full,
                removed=blocks,
                merges=b.maps[method][n],
                selection={**full.selection, "trace": full.selection["trace"][:n]},
                savings=cut_savings(cut, blocks, a.seq_len),
            )
        plan = plan_cut(
            cut,
            b.calib,
            "replaceme-multi",
            CutOptions(blocks=blocks, multi_mode=a.multi_mode, calibration=opts),
        )
        sel = {**full.selection, "trace": full.selection["trace"][:n]}
        return cut, dataclasses.replace(plan, method=method, selection=sel)
    return cut, plan_cut(
        cut,
        b.calib,
        method,
        CutOptions(n=n, calibration=opts, multi_mode=a.multi_mode),
        profile=prof,
    )


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ns = [int(x) for x in a.ns.split(",")]
    b = Bench(a)
    print(
        f"original NLL on {b.evals['wiki'].n_tokens} wiki + {b.evals['news'].n_tokens} news "
        f"tokens; {time.perf_counter() - b.t0:.0f} s",
        flush=True,
    )
    b.add("original", b.lm, {"method": None, "n": 0, "removed": []})
    needs_profile = {
        "replaceme-ls",
        "replaceme-cos",
        "angular",
        "block-influence",
        "replaceme-multi",
    } & set(a.methods.split(","))
    prof = (
        profile(b.lm, b.calib, ProfileOptions(lens=False, n_max=max(ns)), progress=False)
        if needs_profile
        else None
    )
    for n, method in [(n, m) for n in ns for m in a.methods.split(",")]:
        label = f"{method} n={n}"
        if a.max_seconds and time.perf_counter() - b.t0 > a.max_seconds:
            print(f"--max-seconds {a.max_seconds:.0f} reached: no new rows", flush=True)
            break
        if b.done(label) and (method != a.heal or b.done(f"{label} +heal")):
            continue
        try:  # one failing method must not lose the others' rows
            _row(b, method, n, prof)
        except DepthlensError as e:  # the family cannot take the method: say why
            print(f"{label}: refused: {e}", flush=True)
            b.refused.append({"label": label, "reason": str(e)})
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            b.failures.append({"label": label, "error": f"{type(e).__name__}: {e}"})
    result = prune_report.result(b, ns, _speed(b))
    Path(a.out + ".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = prune_report.markdown(result)
    Path(a.out + ".md").write_text(md)
    print(md)


def _row(b: Bench, method: str, n: int, prof: Any) -> None:
    """Plan, cut and evaluate one (method, n); heal it too if it is ``--heal``'s method."""
    a, label = b.a, f"{method} n={n}"
    t = time.perf_counter()
    cut, plan = _plan(b, method, n, prof)
    plan_s = time.perf_counter() - t
    apply_cut_(cut, plan)
    cost = plan.selection.get("cost") or {}
    units = plan.selection.get("units") if method == "units-ls" else None
    if not b.done(label):
        b.add(
            label,
            cut,
            {
                "method": method,
                "n": n,
                "removed": list(plan.removed),
                "units": units,
                "ideal_speedup": plan.savings.get("ideal_speedup"),
                "plan_seconds": plan_s,
                "search_cost": cost,
                "fit": {k: v for k, v in plan.fit.items() if k != "runs"},
            },
        )
    healed = a.heal == "all" or method in a.heal.split(",")
    if healed and a.heal_steps > 0 and not b.done(f"{label} +heal"):
        _heal(b, cut, plan, label)
    if method in a.speed_methods.split(","):
        skip_removed_sublayers_(cut)  # the speed of the cut: removed sublayers compute nothing
        b.timed[label] = cut


def _heal(b: Bench, cut: Any, plan: Any, label: str) -> None:
    from depthlens.heal import CutSites, HealOptions, heal_

    a = b.a
    data = make_windows(
        load_text("wiki-calib"), b.lm.tokenizer, seq_len=a.seq_len, max_tokens=a.heal_tokens, seed=1
    )
    opts = HealOptions(steps=a.heal_steps, batch_size=1, seq_len=a.seq_len, train="blocks")
    rec = heal_(cut, b.lm, data, opts, CutSites.of_plan(plan))
    b.add(
        f"{label} +heal",
        cut,
        {
            "method": f"{plan.method} +heal",
            "n": int(label.split("n=")[1]),  # the row's n (units-ls: n blocks' FLOP share)
            "removed": list(plan.removed),
            "units": plan.selection.get("units") if plan.method == "units-ls" else None,
            "ideal_speedup": plan.savings.get("ideal_speedup"),
            "heal": {k: v for k, v in rec.to_dict().items() if k != "log"},
        },
    )


def _speed(b: Bench) -> dict[str, Any]:
    """Interleaved prefill/decode timing: the original and every timed cut (ideal beside)."""
    if b.a.speed_rounds < 1 or not b.timed:
        return {}
    from depthlens.evaluate.speed import interleaved_speed

    labels = list(b.timed)
    ideals = [None, *(b.rows[k]["ideal_speedup"] for k in labels)]
    cmp = interleaved_speed(
        [b.lm, *(b.timed[k] for k in labels)],
        prompt_len=128,
        decode_tokens=16,
        rounds=b.a.speed_rounds,
        warmup=1,
        threads=b.a.threads,
        labels=["original", *labels],
        ideals=ideals,
    )
    out = {}
    for k, pre, dec in zip(labels, cmp.prefill[1:], cmp.decode[1:], strict=True):
        out[k] = {"prefill": dataclasses.asdict(pre), "decode": dataclasses.asdict(dec)}
    return {"by_label": out, "options": cmp.options}


if __name__ == "__main__":
    main()
