"""How many windows fit in one forward: the logits (batch × seq-len × vocabulary) dominate.

A model with a 49k vocabulary at --seq-len 512 makes 100 MB of float32 logits per window;
``eval --batch-size 200`` asked for ~60 GB and was killed for memory with no message. The
batch is first capped at the number of windows (as the profile does, silently: the result
is the same), then split so the
estimate fits in half the free memory of the device; one window that cannot fit is
refused with the estimate and the fix.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from depthlens.errors import DepthlensError

#: Bytes per logit during a perplexity batch: the logits (≤ 4 B), their float32 copy and
#: the rows gathered for the cross-entropy (4 B each).
BYTES_PER_LOGIT = 12
GIB = 1 << 30


def free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: the driver's count; CPU: available RAM), or None."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def vocab_size(model: Any) -> int:
    """Rows of the unembedding (the logits' last dimension); 0 for a model without one."""
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    weight = getattr(out, "weight", None)
    if weight is not None:
        return int(weight.shape[0])
    return int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)


def fit_batch(
    batch_size: int,
    n_windows: int,
    seq_len: int,
    vocab: int,
    free: int | None,
) -> tuple[int, str | None]:
    """(the batch to run, a note saying why it differs from ``batch_size``, or None)."""
    batch = max(1, min(batch_size, n_windows))  # same result, so no note
    note = None
    per_window = seq_len * vocab * BYTES_PER_LOGIT
    if free is None or per_window == 0:
        return batch, note
    budget = free // 2
    if per_window > budget:
        raise DepthlensError(
            f"one window of --seq-len {seq_len} needs ~{per_window / GIB:.1f} GiB of logits "
            f"({seq_len} × vocabulary {vocab} × {BYTES_PER_LOGIT} bytes), more than half of "
            f"the {free / GIB:.1f} GiB free; lower --seq-len"
        )
    if batch * per_window > budget:
        fit = max(1, budget // per_window)
        note = (
            f"--batch-size {batch} would need ~{batch * per_window / GIB:.1f} GiB of logits "
            f"({batch} × {seq_len} tokens × vocabulary {vocab} × {BYTES_PER_LOGIT} bytes), "
            f"more than half of the {free / GIB:.1f} GiB free; evaluating {fit} windows "
            "at a time (same result)"
        )
        batch = fit
    return batch, note


def fit_eval_batch(lm: Any, windows: Any, batch_size: int) -> tuple[int, str | None]:
    """:func:`fit_batch` for ``lm`` on ``windows``, on the device the inputs go to."""
    return fit_batch(
        batch_size, len(windows), windows.seq_len, vocab_size(lm.model), free_memory(lm.device)
    )
