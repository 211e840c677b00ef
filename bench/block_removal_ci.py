"""Perplexity ratio of each one-block removal, with a paired 95% interval over windows.

For model M and every block ℓ asked: ppl(M without block ℓ) / ppl(M) on the same
held-out windows; the interval is a seeded percentile bootstrap over windows (the
windows are resampled together for both models, so the ratio is paired). A block whose
removal *lowers* perplexity is one whose whole interval lies below 1.

    PYTHONPATH=src python bench/block_removal_ci.py smollm2-135m --blocks 6-19 \
        --tokens 2048 -o bench/results/block_removal_smollm2.json
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

from depthlens.cli.cut_cmd import parse_blocks
from depthlens.cut.apply import remove_blocks_
from depthlens.data import load_text, make_windows
from depthlens.evaluate.perplexity import window_nll
from depthlens.models.loading import load_model


def ratio_ci(
    base: torch.Tensor, cut: torch.Tensor, counts: torch.Tensor, n_boot: int = 4000
) -> tuple[float, float, float]:
    """exp(mean NLL difference) and its paired percentile-bootstrap 95% interval."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, base.numel(), (n_boot, base.numel()), generator=gen)
    diff = (cut[idx].sum(1) - base[idx].sum(1)) / counts[idx].sum(1)
    point = float((cut.sum() - base.sum()) / counts.sum())
    lo, hi = torch.quantile(diff, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return math.exp(point), math.exp(lo), math.exp(hi)


def halves(
    base: torch.Tensor, nlls: list[torch.Tensor], counts: torch.Tensor, n_boot: int = 4000
) -> dict[str, Any]:
    """First-half vs second-half blocks: mean and median removal cost (Δloss, nats/token).

    ``nlls`` holds every block's per-window NLL, in block order. The windows are resampled
    together for every block, so each half's statistic and their difference get a paired
    percentile-bootstrap 95% interval over text windows.
    """
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, base.numel(), (n_boot, base.numel()), generator=gen)
    stack = torch.stack(nlls)  # (L, W)
    half = len(nlls) // 2

    def deltas(ix: torch.Tensor | None) -> torch.Tensor:  # (…, L) Δloss per block
        if ix is None:
            return (stack.sum(-1) - base.sum()) / counts.sum()
        return (stack[:, ix].sum(-1) - base[ix].sum(-1)) / counts[ix].sum(-1)

    point, boot = deltas(None), deltas(idx).T  # (L,), (n_boot, L)
    out: dict[str, Any] = {"split": f"blocks 0-{half - 1} vs {half}-{len(nlls) - 1}"}
    for name, fn in (("mean", torch.mean), ("median", torch.median)):
        for key, a, b in (("first", 0, half), ("second", half, len(nlls))):
            v = boot[:, a:b]
            bs = v.mean(1) if fn is torch.mean else v.median(1).values
            pt = point[a:b].mean() if fn is torch.mean else point[a:b].median()
            out[f"{name}_{key}"] = _with_ci(float(pt), bs)
        f, s = boot[:, :half], boot[:, half:]
        dif = (
            (f.mean(1) - s.mean(1)) if fn is torch.mean else f.median(1).values - s.median(1).values
        )
        pt = out[f"{name}_first"]["value"] - out[f"{name}_second"]["value"]
        out[f"{name}_first_minus_second"] = _with_ci(pt, dif)
    return out


def _with_ci(point: float, boot: torch.Tensor) -> dict[str, Any]:
    q = torch.quantile(boot.double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {"value": point, "ci95": q.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--blocks", default=None, help="e.g. 6-19 (default every block)")
    ap.add_argument("--data", default="wiki-eval")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared CPU: 1)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model(args.model)
    windows = make_windows(
        load_text(args.data), lm.tokenizer, seq_len=args.seq_len, max_tokens=args.tokens, seed=0
    )
    base, counts = window_nll(lm, windows, batch_size=1)
    rows: list[dict[str, Any]] = []
    nlls: list[torch.Tensor] = []
    blocks = parse_blocks(args.blocks) if args.blocks else list(range(lm.num_layers))
    for ell in blocks:
        cut = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
        remove_blocks_(cut, (ell,))
        nll, _ = window_nll(cut, windows, batch_size=1)
        nlls.append(nll)
        r, lo, hi = ratio_ci(base, nll, counts)
        verdict = "lowers ppl" if hi < 1 else "raises ppl" if lo > 1 else "no difference"
        rows.append({"block": ell, "ratio": r, "ci95": [lo, hi], "verdict": verdict})
        print(f"block {ell:>2}: ppl x{r:.3f} [95% CI {lo:.3f}, {hi:.3f}] {verdict}", flush=True)
        del cut
        # after every block, so that a run cut short by the CPU budget keeps its rows
        out = summary(args, lm, windows, base, counts, rows, len(blocks)) | {
            "seconds": time.perf_counter() - t0
        }
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    if len(rows) == lm.num_layers:  # every block: compare the halves
        out["halves"] = halves(base, nlls, counts)
        print(json.dumps(out["halves"], indent=1), flush=True)
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n")


def summary(
    args: Any,
    lm: Any,
    windows: Any,
    base: torch.Tensor,
    counts: torch.Tensor,
    rows: list[Any],
    n_blocks: int,
) -> dict[str, Any]:
    """The result JSON of the rows done so far."""
    return {
        "model": args.model,
        "num_layers": lm.num_layers,
        "data": windows.to_dict(),
        "n_windows": len(windows),
        "n_tokens": int(counts.sum()),
        "base_ppl": math.exp(float(base.sum() / counts.sum())),
        "interval": "paired percentile bootstrap over windows, 4000 resamples, seed 0",
        "rows": rows,
        "complete": len(rows) == n_blocks,
        "load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
