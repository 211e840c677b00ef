"""Benchmark: every cut method on SmolLM2-135M, n in {4, 8, 12} of 30 blocks, plus healing.

Held-out wiki perplexity (wiki-eval, >= 32k tokens) and out-of-domain news perplexity (all
of it), with paired per-window standard errors of the ratio to the original (the same
windows for every model), predicted and measured speed-ups, and each plan's calibration
cost. Designed for 2 shared CPU cores:

- the original's per-window NLL is computed once; every model is evaluated once;
- one profile pass feeds the angular / block-influence selections of every n;
- greedy-loss (SLEB), greedy-ls and beam-ls are nested searches: one run to max(n) gives
  the plan of every smaller n (the step-k state of a greedy or beam search is its k-plan);
- every finished row goes to ``<out>.partial.json`` at once, and a rerun with the same
  settings skips the rows already there (``--fresh`` to start over).

    python bench/prune_quality.py       # writes bench/results/prune_quality.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from depthlens.cut import METHODS, CalibrationOptions, CutOptions, apply_cut_, plan_cut
from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.search import SearchOptions, search_removed
from depthlens.data import check_disjoint, load_text, make_windows
from depthlens.evaluate.flops import cut_savings, flops_per_token
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
    p.add_argument("--heal", default="greedy-ls", help="method whose cuts are healed ('' = none)")
    p.add_argument("--heal-steps", type=int, default=50)
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


@torch.inference_mode()
def window_nll(lm: Any, windows: Any, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window: (summed next-token NLL in float64, number of predicted tokens)."""
    sums, counts = [], []
    for ids, mask in windows.batches(batch_size):
        ids, mask = ids.to(lm.device), mask.to(lm.device)
        logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        keep = (mask[:, 1:] * mask[:, :-1]).bool()  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none"
        )  # (B, T-1)
        sums.append((nll.double() * keep).sum(1).cpu())
        counts.append(keep.sum(1).double().cpu())
    return torch.cat(sums), torch.cat(counts)


def ratio_stats(
    cut: tuple[torch.Tensor, torch.Tensor], base: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """ppl, ratio to the original and its 95% interval from paired per-window differences.

    Ratio = exp(Σ(nll_cut − nll_orig) / Σn); its standard error is that of a ratio
    estimator over windows (the windows, not the tokens, are the independent units).
    """
    (s, n), (s0, _) = cut, base
    w = len(n)
    mean = float(s.sum() / n.sum())
    diff = float((s - s0).sum() / n.sum())

    def se(x: torch.Tensor, r: float) -> float:
        return float(((x - r * n) ** 2).sum() * w / max(w - 1, 1)) ** 0.5 / float(n.sum())

    se_nll, se_diff = se(s, mean), se(s - s0, diff)
    return {
        "ppl": _exp(mean),
        "ppl_lo": _exp(mean - 1.96 * se_nll),
        "ppl_hi": _exp(mean + 1.96 * se_nll),
        "ratio": _exp(diff),
        "ratio_lo": _exp(diff - 1.96 * se_diff),
        "ratio_hi": _exp(diff + 1.96 * se_diff),
        "windows": w,
        "tokens": int(n.sum()),
    }


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else float("inf")


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
            not in ("fresh", "out", "ns", "methods", "speed_rounds", "batch_size", "max_seconds")
        }
        self.rows: dict[str, dict[str, Any]] = {}
        if self.partial.is_file() and not a.fresh:
            old = json.loads(self.partial.read_text())
            if old.get("key") == self.key:
                self.rows = old["rows"]
        self.base = {k: window_nll(self.lm, w, a.batch_size) for k, w in self.evals.items()}
        self.failures: list[dict[str, str]] = []
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
        row["ideal_speedup"] = self.flops0 / flops_per_token(lm, self.a.seq_len)["total"]
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
    shapes: dict[int, Any] = {}
    for n, method in [(n, m) for n in ns for m in a.methods.split(",")]:
        label = f"{method} n={n}"
        if a.max_seconds and time.perf_counter() - b.t0 > a.max_seconds:
            print(f"--max-seconds {a.max_seconds:.0f} reached: no new rows", flush=True)
            break
        if b.done(label) and (method != a.heal or b.done(f"{label} +heal")):
            continue
        try:  # one failing method must not lose the others' rows
            _row(b, method, n, prof, shapes)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            b.failures.append({"label": label, "error": f"{type(e).__name__}: {e}"})
    result = _result(b, ns, _speed(b, shapes, ns))
    Path(a.out + ".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = _markdown(result)
    Path(a.out + ".md").write_text(md)
    print(md)


def _row(b: Bench, method: str, n: int, prof: Any, shapes: dict[int, Any]) -> None:
    """Plan, cut and evaluate one (method, n); heal it too if it is ``--heal``'s method."""
    a, label = b.a, f"{method} n={n}"
    t = time.perf_counter()
    cut, plan = _plan(b, method, n, prof)
    plan_s = time.perf_counter() - t
    apply_cut_(cut, plan)
    shapes.setdefault(n, cut)
    cost = plan.selection.get("cost") or {}
    if not b.done(label):
        b.add(
            label,
            cut,
            {
                "method": method,
                "n": n,
                "removed": list(plan.removed),
                "plan_seconds": plan_s,
                "search_cost": cost,
                "fit": {k: v for k, v in plan.fit.items() if k != "runs"},
            },
        )
    if method == a.heal and a.heal_steps > 0 and not b.done(f"{label} +heal"):
        _heal(b, cut, plan, label)


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
            "n": plan.n_removed,
            "removed": list(plan.removed),
            "heal": {k: v for k, v in rec.to_dict().items() if k != "log"},
        },
    )


def _speed(b: Bench, shapes: dict[int, Any], ns: list[int]) -> dict[str, Any]:
    """Interleaved prefill/decode timing: original and one cut model per n (same shapes)."""
    if b.a.speed_rounds < 1 or not shapes:
        return {}
    from depthlens.evaluate.speed import interleaved_speed

    ks = [n for n in ns if n in shapes]
    cmp = interleaved_speed(
        [b.lm, *(shapes[n] for n in ks)],
        prompt_len=128,
        decode_tokens=16,
        rounds=b.a.speed_rounds,
        warmup=1,
        threads=b.a.threads,
        labels=["original", *(f"n={n}" for n in ks)],
    )
    out = {}
    for n, pre, dec in zip(ks, cmp.prefill[1:], cmp.decode[1:], strict=True):
        out[str(n)] = {"prefill": dataclasses.asdict(pre), "decode": dataclasses.asdict(dec)}
    return {"by_n": out, "options": cmp.options}


def _result(b: Bench, ns: list[int], speed: dict[str, Any]) -> dict[str, Any]:
    rows = list(b.rows.values())
    targets = {}
    for n, limit in ((4, 1.25), (8, 2.0)):
        cands = [r for r in rows if r["n"] == n]
        if cands:
            best = min(cands, key=lambda r: r["wiki"]["ratio"])
            targets[f"n={n}"] = {
                "best": best["label"],
                "wiki_ratio": best["wiki"]["ratio"],
                "target": limit,
                "met": best["wiki"]["ratio"] <= limit,
                "news_over_wiki": best["news_over_wiki"],
                "news_met": best["news_over_wiki"] <= 1.2,
            }
    return {
        "kind": "depthlens.bench.prune_quality",
        "model": b.a.model,
        "num_layers": b.lm.num_layers,
        "options": vars(b.a),
        "load_average": os.getloadavg(),
        "calibration": {"data": "wiki-calib", "n_tokens": b.calib.n_tokens},
        "eval": {k: {"n_tokens": w.n_tokens, "n_windows": len(w)} for k, w in b.evals.items()},
        "device": str(b.lm.device),
        "gpu": _gpu_name(b.lm.device),
        "seconds": time.perf_counter() - b.t0,
        "targets": targets,
        "speed": speed,
        "failures": b.failures,
        "rows": rows,
    }


def _gpu_name(device: Any) -> str | None:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None


def _ci(d: dict[str, float]) -> str:
    return f"{d['ratio']:.3f} [{d['ratio_lo']:.3f}, {d['ratio_hi']:.3f}]"


def _markdown(r: dict[str, Any]) -> str:
    ev, o = r["eval"], r["options"]
    la = ", ".join(f"{x:.1f}" for x in r["load_average"])
    lines = [
        f"{r['model']}, {r['num_layers']} blocks. Calibration "
        f"{r['calibration']['n_tokens']} wiki-calib tokens; "
        f"evaluation {ev['wiki']['n_tokens']} wiki-eval tokens ({ev['wiki']['n_windows']} "
        f"windows) and {ev['news']['n_tokens']} news tokens ({ev['news']['n_windows']} "
        f"windows) of {o['seq_len']}; ratios to the original with 95% intervals from paired "
        f"per-window differences; device {r.get('gpu') or r.get('device', 'cpu')}, "
        f"{o['threads']} thread(s), load average {la}; {r['seconds']:.0f} s in all.",
        "",
        "| method | n | removed | wiki ppl | wiki x orig [95% CI] | news ppl | news x orig "
        "[95% CI] | news/wiki | ideal x | plan FE | plan s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        cost = row.get("search_cost") or {}
        fe = cost.get("total_fe", cost.get("forward_equivalents"))
        lines.append(
            f"| {row['method'] or 'original'} | {row['n']} | {row['removed']} | "
            f"{row['wiki']['ppl']:.2f} | {_ci(row['wiki'])} | {row['news']['ppl']:.2f} | "
            f"{_ci(row['news'])} | {row['news_over_wiki']:.3f} | {row['ideal_speedup']:.3f} | "
            f"{'' if fe is None else f'{fe:.1f}'} | {row.get('plan_seconds', 0):.0f} |"
        )
    lines += [
        "",
        "Targets (best row per n): "
        + "; ".join(
            f"{k}: {v['best']} x{v['wiki_ratio']:.3f} (target {v['target']}, "
            f"{'met' if v['met'] else 'NOT met'}; news/wiki {v['news_over_wiki']:.3f}, "
            f"{'met' if v['news_met'] else 'NOT met'})"
            for k, v in r["targets"].items()
        ),
    ]
    lines += [f"- FAILED {f['label']}: {f['error']}" for f in r.get("failures", [])]
    for n, s in (r.get("speed") or {}).get("by_n", {}).items():
        p, d = s["prefill"], s["decode"]
        lines.append(
            f"- speed n={n}: prefill x{p['median']:.2f} [95% CI {p['ci95'][0]:.2f}, "
            f"{p['ci95'][1]:.2f}] ({p['verdict']}), decode x{d['median']:.2f} "
            f"[{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}] ({d['verdict']}), ideal "
            f"x{p['ideal']:.2f}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
