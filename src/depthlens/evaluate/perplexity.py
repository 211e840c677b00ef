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


def _next_token_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (B, T-1, V) in float32, targets (B, T-1), which positions count (B, T-1))."""
    out = model(input_ids=ids, attention_mask=mask, use_cache=False)
    logits = out.logits[:, :-1].float()  # (B, T-1, V)
    keep = (mask[:, 1:] * mask[:, :-1]).bool()  # (B, T-1): both positions real
    return logits, ids[:, 1:], keep


def batch_nll(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum of next-token NLL in float64, number of predicted tokens) for one batch."""
    logits, target, keep = _next_token_logits(model, ids, mask)
    nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="none")  # (N,)
    return float(host_sum(nll)), int(keep.sum())


@torch.inference_mode()
def window_nll(
    lm: LoadedModel, windows: TokenWindows, batch_size: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window: (summed next-token NLL in float64, number of predicted tokens).

    For paired comparisons of two models on the same windows (the windows, not the
    tokens, are the independent units of a confidence interval).
    """
    sums, counts = [], []
    for ids, mask in windows.batches(batch_size):
        logits, target, keep = _next_token_logits(lm.model, ids.to(lm.device), mask.to(lm.device))
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), target, reduction="none"
        )  # (B, T-1)
        sums.append((nll.double() * keep).sum(1).cpu())
        counts.append(keep.sum(1).double().cpu())
    return torch.cat(sums), torch.cat(counts)


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
