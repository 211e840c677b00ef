"""Perplexity over fixed, non-overlapping windows (SPEC "Evaluation").

exp(mean NLL) over every predicted real token; the NLL is summed in float64 so long runs
and many-model comparisons agree to the last digit whatever the batch split.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import host_sum
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar


def batch_nll(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum of next-token NLL in float64, number of predicted tokens) for one batch."""
    out = model(input_ids=ids, attention_mask=mask, use_cache=False)
    logits = out.logits[:, :-1].float()  # (B, T-1, V)
    target = ids[:, 1:]
    keep = (mask[:, 1:] * mask[:, :-1]).bool()  # (B, T-1): both positions real
    nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="none")  # (N,)
    return float(host_sum(nll)), int(keep.sum())


def evaluate_perplexity(
    lm: LoadedModel, windows: TokenWindows, *, batch_size: int = 4, progress: bool = False
) -> dict[str, Any]:
    """Perplexity of ``lm`` on ``windows``: ppl, mean nll (nats), nll_sum, n_tokens."""
    if len(windows) == 0:
        raise DepthlensError("no evaluation windows; use a longer text or a smaller --seq-len")
    from depthlens.evaluate.batch_memory import fit_eval_batch

    total, count = 0.0, 0
    batch_size, _ = fit_eval_batch(lm, windows, batch_size)  # the CLI printed the note
    batches = list(windows.batches(batch_size))
    # Progress in predicted tokens: a batch of long windows can take many seconds.
    total_tokens = sum(int((m[:, 1:] * m[:, :-1]).sum()) for _, m in batches)
    bar = progress_bar(total_tokens, "perplexity", enabled=progress, unit="tok")
    with torch.inference_mode():
        for ids, mask in batches:
            s, c = batch_nll(lm.model, ids.to(lm.device), mask.to(lm.device))
            total += s
            count += c
            bar.update(c)
    bar.close()
    if count == 0:
        raise DepthlensError("the evaluation windows hold no token to predict")
    nll = total / count
    return {
        "ppl": math.exp(nll) if nll < 700 else float("inf"),
        "nll": nll,
        "nll_sum": total,
        "n_tokens": count,
        "seq_len": windows.seq_len,
        "n_windows": len(windows),
    }
