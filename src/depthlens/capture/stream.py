"""One streamed pass: the residual states of chosen positions, batch by batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.progress import progress_bar


def stream_states(
    lm: Any,
    data: Any,
    batch_size: int,
    positions: torch.Tensor,
    *,
    label: str = "forward",
    progress: bool = False,
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Forward ``data`` (TokenWindows) through ``lm`` (LoadedModel) batch by batch.

    Yields ``(rows, states)``: the window indices of the batch and h_0..h_L at its
    selected positions (``positions[rows]``, a (W, T) bool mask), each (N, d) on the
    model's device. The forward runs under ``torch.inference_mode`` with the unmodified
    model and scoped hooks.
    """
    fkw = forward_kwargs(lm.model)
    batches = data.row_batches(batch_size)
    bar = progress_bar(len(batches), label, enabled=progress)
    with capture_blocks(lm.model, lm.arch, attn=False) as trace, torch.inference_mode():
        for rows in batches:
            trace.clear()
            run_forward(
                lm.model,
                data.input_ids[rows].to(lm.device),
                data.attention_mask[rows].to(lm.device),
                **fkw,
            )
            sel = positions[rows]
            yield rows, [t[sel.to(t.device)] for t in trace.all_states()]
            bar.update(1)
    bar.close()
