"""Held-out perplexity of a cut model against the original: paired per-window ratios.

The per-window NLL comes from ``depthlens.evaluate.perplexity.window_nll``.
"""

from __future__ import annotations

import math

import torch


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
