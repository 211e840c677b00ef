"""Merge the ReplaceMe map T into an MLP output projection: same shapes, no new parameters.

nn.Linear computes y = x Wᵀ + b with W of shape (out, in): y T = x (Tᵀ W)ᵀ + Tᵀ b, so
W' = Tᵀ W and b' = Tᵀ b. GPT-2's Conv1D computes y = x W + b with W of shape (in, out):
W' = W T and b' = b T.
"""

from __future__ import annotations

import torch
from torch import nn

from depthlens.errors import DepthlensError


@torch.no_grad()
def merge_transform_(proj: nn.Module, t: torch.Tensor) -> None:
    """Make ``proj`` output ``proj(x) @ T`` in place (T: (d, d), any float dtype)."""
    w = getattr(proj, "weight", None)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise DepthlensError(f"cannot merge T into {type(proj).__name__}: no 2-D weight")
    t64 = t.to(torch.float64)
    if isinstance(proj, nn.Linear):
        new_w = t64.T @ w.double()  # (out, in)
    elif type(proj).__name__ == "Conv1D":
        new_w = w.double() @ t64  # (in, out)
    else:
        raise DepthlensError(
            f"cannot merge T into a {type(proj).__name__}; only nn.Linear and Conv1D are supported"
        )
    w.copy_(new_w.to(w.dtype))
    b = getattr(proj, "bias", None)
    if isinstance(b, torch.Tensor):
        b.copy_((b.double() @ t64).to(b.dtype))
