"""Which positions of a batch of windows a statistic sees (padding, first position, targets)."""

from __future__ import annotations

import torch

from depthlens.data.windows import TokenWindows


def real_positions(attention_mask: torch.Tensor, include_first_token: bool) -> torch.Tensor:
    """(W, T) bool: real tokens, minus each window's first real position unless kept.

    The first position (BOS, the attention sink) carries massive activations that would
    dominate most statistics, so analyses leave it out by default.
    """
    am = attention_mask.bool()
    valid = am.clone()
    if not include_first_token:
        first = am.long().argmax(dim=1)  # first real position of each window
        valid[torch.arange(am.shape[0]), first] = False
    return valid


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(W, T) bool: the last real position of each window."""
    am = attention_mask.bool()
    last = am.shape[1] - 1 - am.flip(1).long().argmax(dim=1)
    out = torch.zeros_like(am)
    out[torch.arange(am.shape[0]), last] = True
    return out


def next_token_ids(windows: TokenWindows) -> torch.Tensor:
    """(W, T) the id of the next real token at each position, -1 where there is none."""
    am = windows.attention_mask.bool()
    nxt = torch.full_like(windows.input_ids, -1)
    nxt[:, :-1] = torch.where(am[:, 1:], windows.input_ids[:, 1:], -1)
    return nxt
