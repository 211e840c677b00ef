"""The result JSON and the markdown table of bench/prune_quality.py."""

from __future__ import annotations

import os
import time
from typing import Any

import torch


def result(b: Any, ns: list[int], speed: dict[str, Any]) -> dict[str, Any]:
    """Everything the run measured, with the issue's targets checked."""
    rows = list(b.rows.values())
    targets = {}
    for n, limit in ((4, 1.15), (8, 1.6)):
        cands = [r for r in rows if r["n"] == n and "+heal" not in str(r["method"])]
        if cands:
            best = min(cands, key=lambda r: r["wiki"]["ratio"])
            targets[f"n={n} training-free"] = {
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
        "refused": b.refused,
        "rows": rows,
    }


def _gpu_name(device: Any) -> str | None:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None


def _ci(d: dict[str, float]) -> str:
    return f"{d['ratio']:.3f} [{d['ratio_lo']:.3f}, {d['ratio_hi']:.3f}]"


def _gen(row: dict[str, Any]) -> str:
    g = row.get("generation")
    if not g:
        return ""
    return f"{g['agreement']:.3f} [{g['agreement_lo']:.3f}, {g['agreement_hi']:.3f}]"


def _removed(row: dict[str, Any]) -> str:
    units = row.get("units")
    return " ".join(units) if units else str(row["removed"])


def markdown(r: dict[str, Any]) -> str:
    """The table (one row per cut), the targets, refusals and the speed lines."""
    ev, o = r["eval"], r["options"]
    la = ", ".join(f"{x:.1f}" for x in r["load_average"])
    lines = [
        f"{r['model']}, {r['num_layers']} blocks. Calibration "
        f"{r['calibration']['n_tokens']} wiki-calib tokens; "
        f"evaluation {ev['wiki']['n_tokens']} wiki-eval tokens ({ev['wiki']['n_windows']} "
        f"windows) and {ev['news']['n_tokens']} news tokens ({ev['news']['n_windows']} "
        f"windows) of {o['seq_len']}; ratios to the original with 95% intervals from paired "
        f"per-window differences; generation: greedy continuations of "
        f"{o['gen_prompts']} held-out prompts x {o['gen_tokens']} tokens, share of tokens "
        f"equal to the original's [95% CI over prompts]; device "
        f"{r.get('gpu') or r.get('device', 'cpu')}, {o['threads']} thread(s), load average "
        f"{la}; {r['seconds']:.0f} s in all.",
        "",
        "| method | n | removed | wiki ppl | wiki x orig [95% CI] | news ppl | news x orig "
        "[95% CI] | news/wiki | gen. agreement | FLOPs removed | ideal x | plan s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['method'] or 'original'} | {row['n']} | {_removed(row)} | "
            f"{row['wiki']['ppl']:.2f} | {_ci(row['wiki'])} | {row['news']['ppl']:.2f} | "
            f"{_ci(row['news'])} | {row['news_over_wiki']:.3f} | {_gen(row)} | "
            f"{1 - 1 / row['ideal_speedup']:.3f} | {row['ideal_speedup']:.3f} | "
            f"{row.get('plan_seconds', 0):.0f} |"
        )
    lines += [
        "",
        "Targets (best training-free row per n): "
        + "; ".join(
            f"{k}: {v['best']} x{v['wiki_ratio']:.3f} (target {v['target']}, "
            f"{'met' if v['met'] else 'NOT met'}; news/wiki {v['news_over_wiki']:.3f})"
            for k, v in r["targets"].items()
        ),
    ]
    lines += [f"- refused {f['label']}: {f['reason']}" for f in r.get("refused", [])]
    lines += [f"- FAILED {f['label']}: {f['error']}" for f in r.get("failures", [])]
    for label, s in (r.get("speed") or {}).get("by_label", {}).items():
        p, d = s["prefill"], s["decode"]
        lines.append(
            f"- speed {label}: prefill x{p['median']:.2f} [95% CI {p['ci95'][0]:.2f}, "
            f"{p['ci95'][1]:.2f}] ({p['verdict']}), decode x{d['median']:.2f} "
            f"[{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}] ({d['verdict']}), ideal "
            f"x{p['ideal']:.2f}"
        )
    return "\n".join(lines) + "\n"
