"""Residual-stream metrics: what each block writes and how far the stream moves.

Definitions follow SPEC "One-pass metrics": relative contributions and cosines
(Csordás et al., "Do Language Models Use Their Depth Efficiently?"), block influence
(ShortGPT), angular distance (Gromov et al., "The Unreasonable Ineffectiveness of the
Deeper Layers"; ReplaceMe), residual norm growth ("The Curse of Depth in LLMs").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthlens.errors import NonFiniteActivationError
from depthlens.metrics.accumulate import Accumulator, host_sum, zeros

EPS = 1e-12

#: Per-block metrics (length L), each a mean of per-token values.
BLOCK_METRICS = (
    "rel_contrib_attn",
    "rel_contrib_mlp",
    "rel_contrib_block",
    "cos_attn",
    "cos_mlp",
    "cos_block",
    "block_influence",
    "resid_rms_growth",
)


@dataclass
class ResidualSums(Accumulator):
    """Float64 sums of the residual metrics over tokens (one entry per block or state)."""

    rel_contrib_attn: torch.Tensor  # (L,)
    rel_contrib_mlp: torch.Tensor
    rel_contrib_block: torch.Tensor
    cos_attn: torch.Tensor
    cos_mlp: torch.Tensor
    cos_block: torch.Tensor
    block_influence: torch.Tensor
    resid_rms_growth: torch.Tensor
    resid_norm: torch.Tensor  # (L+1,): ‖h_0‖..‖h_L‖
    angular_distance: torch.Tensor  # (L, n_max): [start l][n-1]
    n_tokens: torch.Tensor  # ()
    n_angular_tokens: torch.Tensor  # ()

    @classmethod
    def zeros(cls, n_layers: int, n_max: int) -> ResidualSums:
        """Every accumulator with its final shape (all ranks agree)."""
        per_block = {name: zeros(n_layers) for name in BLOCK_METRICS}
        return cls(**per_block, resid_norm=zeros(n_layers + 1),
                   angular_distance=zeros(n_layers, n_max), n_tokens=zeros(),
                   n_angular_tokens=zeros())  # fmt: skip


def _cos(x: torch.Tensor, y: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(-1) / (nx * ny).clamp_min(EPS)


def check_finite(norms: torch.Tensor, layer: int, what: str) -> None:
    """Raise with the layer where NaN/inf first appears (norms propagate them for free)."""
    if not bool(torch.isfinite(norms).all()):
        raise NonFiniteActivationError(
            f"NaN or inf activations at {what} of block {layer}; try --dtype float32 "
            "(fp16 overflows on many models) or check the model's weights"
        )


def accumulate_block(
    sums: ResidualSums, l: int, h: torch.Tensor, out: torch.Tensor, a: torch.Tensor
) -> None:
    """Add block ``l``'s per-token metrics for states ``h`` -> ``out`` with attention add ``a``.

    ``h``, ``out``, ``a``: (N, d) real tokens only. m_l is Δ_l − a_l, which is what the MLP
    adds for sequential, parallel and post-norm wirings alike.
    """
    h, out, a = h.float(), out.float(), a.float()
    delta = out - h  # (N, d)
    m = delta - a
    ha = h + a
    nh, na, nm, nd = h.norm(dim=-1), a.norm(dim=-1), m.norm(dim=-1), delta.norm(dim=-1)
    nha, nout = ha.norm(dim=-1), out.norm(dim=-1)
    check_finite(nout, l, "the output")
    check_finite(na, l, "the attention output")
    s = sums
    s.rel_contrib_attn[l] += host_sum(na / nh.clamp_min(EPS))
    s.rel_contrib_mlp[l] += host_sum(nm / nha.clamp_min(EPS))
    s.rel_contrib_block[l] += host_sum(nd / nh.clamp_min(EPS))
    s.cos_attn[l] += host_sum(_cos(a, h, na, nh))
    s.cos_mlp[l] += host_sum(_cos(m, ha, nm, nha))
    s.cos_block[l] += host_sum(_cos(delta, h, nd, nh))
    s.block_influence[l] += host_sum(1.0 - _cos(h, out, nh, nout))
    s.resid_rms_growth[l] += host_sum(nout / nh.clamp_min(EPS))
    norms = s.resid_norm
    norms[l] += host_sum(nh)
    if l + 2 == norms.shape[0]:  # last block: also record ‖h_L‖
        norms[l + 1] += host_sum(nout)



def accumulate_states(sums: ResidualSums, states: list[torch.Tensor], n_max: int) -> None:
    """Add angular distances arccos(cos(h_l, h_{l+n}))/π for n = 1..n_max.

    ``states``: L+1 tensors (N, d) of the same tokens.
    """
    stack = torch.stack([s.float() for s in states], dim=1)  # (N, L+1, d)
    norms = stack.norm(dim=-1)  # (N, L+1)
    unit = stack / norms.clamp_min(EPS).unsqueeze(-1)
    gram = torch.bmm(unit, unit.transpose(1, 2)).clamp_(-1.0, 1.0)  # (N, L+1, L+1)
    ang = (torch.arccos(gram).double().sum(0) / math.pi).cpu()  # (L+1, L+1)
    n_states = stack.shape[1]
    acc = sums.angular_distance  # (L, n_max): [start l][n-1]
    for n in range(1, n_max + 1):
        idx = torch.arange(0, n_states - n)
        acc[idx, n - 1] += ang[idx, idx + n]

