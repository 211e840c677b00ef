"""Merge the ReplaceMe map T into an MLP output projection: same shapes, no new parameters.

nn.Linear computes y = x Wᵀ + b with W of shape (out, in): y T = x (Tᵀ W)ᵀ + Tᵀ b, so
W' = Tᵀ W and b' = Tᵀ b. GPT-2's Conv1D computes y = x W + b with W of shape (in, out):
W' = W T and b' = b T.
"""

from __future__ import annotations

import torch
from torch import nn

from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import widen


@torch.no_grad()
def merge_transform_(proj: nn.Module, t: torch.Tensor) -> None:
    """Make ``proj`` output ``proj(x) @ T`` in place (T: (d, d), any float dtype)."""
    w = getattr(proj, "weight", None)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise DepthlensError(f"cannot merge T into {type(proj).__name__}: no 2-D weight")
    # T is fitted on the CPU; the product is formed where the weight lives, widened there.
    t64, w64 = widen(t.to(w.device)), widen(w)
    if isinstance(proj, nn.Linear):
        new_w = t64.T @ w64  # (out, in)
    elif type(proj).__name__ == "Conv1D":
        new_w = w64 @ t64  # (in, out)
    else:
        raise DepthlensError(
            f"cannot merge T into a {type(proj).__name__}; only nn.Linear and Conv1D are supported"
        )
    w.copy_(new_w.to(w.dtype))
    b = getattr(proj, "bias", None)
    if isinstance(b, torch.Tensor):
        b.copy_((widen(b) @ t64).to(b.dtype))
