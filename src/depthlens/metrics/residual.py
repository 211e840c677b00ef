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
from depthlens.metrics.registry import streamed_block_records
from depthlens.metrics.vectors import EPS, BlockVectors


def block_metric_names() -> tuple[str, ...]:
    """The streamed per-block metrics, from their records (order = declaration order)."""
    return tuple(r.name for r in streamed_block_records())


@dataclass
class ResidualSums(Accumulator):
    """Float64 sums of the residual metrics over tokens."""

    per_block: torch.Tensor  # (M, L): row i sums record i of block_metric_names()
    resid_norm: torch.Tensor  # (L+1,): ‖h_0‖..‖h_L‖
    angular_distance: torch.Tensor  # (L, n_max): [start l][n-1]
    n_tokens: torch.Tensor  # ()
    n_angular_tokens: torch.Tensor  # ()

    @classmethod
    def zeros(cls, n_layers: int, n_max: int) -> ResidualSums:
        """Every accumulator with its final shape (all ranks agree)."""
        return cls(
            per_block=zeros(len(block_metric_names()), n_layers),
            resid_norm=zeros(n_layers + 1),
            angular_distance=zeros(n_layers, n_max),
            n_tokens=zeros(),
            n_angular_tokens=zeros(),
        )

    def block_sums(self) -> dict[str, torch.Tensor]:
        """{metric: (L,) sum over tokens} for every streamed per-block record."""
        return dict(zip(block_metric_names(), self.per_block, strict=True))


def check_finite(norms: torch.Tensor, layer: int, what: str) -> None:
    """Raise with the layer where NaN/inf first appears (norms propagate them for free)."""
    if not bool(torch.isfinite(norms).all()):
        raise NonFiniteActivationError(
            f"NaN or inf activations at {what} of block {layer}; try --dtype float32 "
            "(fp16 overflows on many models) or check the model's weights"
        )


def accumulate_block(
    sums: ResidualSums,
    l: int,
    h: torch.Tensor,
    out: torch.Tensor,
    a: torch.Tensor,
    *,
    parallel: bool = False,
) -> None:
    """Add block ``l``'s per-token metrics for states ``h`` -> ``out`` with attention add ``a``.

    ``h``, ``out``, ``a``: (N, d) real tokens only. m_l is Δ_l − a_l, which is what the MLP
    adds for sequential, parallel and post-norm wirings alike; ``parallel``: the MLP reads
    h_l, not h_l + a_l (GPT-NeoX, Phi).
    """
    v = BlockVectors(h.float(), a.float(), out.float(), parallel=parallel)
    nout, nh = v.norm("out"), v.norm("h")
    check_finite(nout, l, "the output")
    check_finite(v.norm("a"), l, "the attention output")
    s = sums
    for i, rec in enumerate(streamed_block_records()):
        assert rec.per_token is not None  # streamed_block_records() keeps only these
        s.per_block[i, l] += host_sum(rec.per_token(v))
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
    ang = host_sum(torch.arccos(gram), dim=0) / math.pi  # (L+1, L+1), on the CPU
    n_states = stack.shape[1]
    acc = sums.angular_distance  # (L, n_max): [start l][n-1]
    for n in range(1, n_max + 1):
        idx = torch.arange(0, n_states - n)
        acc[idx, n - 1] += ang[idx, idx + n]
