"""Generative check of a cut model: greedy continuations of held-out prompts.

Each prompt is the start of a held-out window (wiki-eval and news alike); the original and
the cut model continue it greedily with the KV cache. Agreement is the share of generated
tokens equal to the original's at the same position; once a continuation diverges its
later tokens rarely match, so this is close to "how long the cut model stays on the
original's path". The 95% interval is over prompts (normal approximation).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def prompts(windows: list[Any], n: int, length: int) -> torch.Tensor:
    """(n, length) prompt ids: the first ``length`` tokens of windows taken in turn."""
    rows = []
    k = 0
    while len(rows) < n:
        w = windows[k % len(windows)]
        i = k // len(windows)
        if i >= len(w):
            break
        rows.append(w.input_ids[i, :length])
        k += 1
    return torch.stack(rows)


@torch.inference_mode()
def continuations(lm: Any, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """(n, new_tokens) greedy continuations (one prompt at a time: no padding effects)."""
    model: Any = lm.model
    out = []
    for row in ids:
        x = row[None].to(lm.device)
        g = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
        out.append(g[0, x.shape[1] :].cpu())
    return torch.stack(out)


def agreement(cut: torch.Tensor, orig: torch.Tensor) -> dict[str, float]:
    """Share of tokens equal to the original's, per prompt averaged, with a 95% interval."""
    per = (cut == orig).double().mean(1)  # (n,)
    n = len(per)
    mean = float(per.mean())
    se = float(per.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    first = [
        int((row != o).nonzero()[0]) if bool((row != o).any()) else len(o)
        for row, o in zip(cut, orig, strict=True)
    ]
    return {
        "agreement": mean,
        "agreement_lo": max(mean - 1.96 * se, 0.0),
        "agreement_hi": min(mean + 1.96 * se, 1.0),
        "tokens_before_divergence": sum(first) / n,
        "prompts": n,
    }
