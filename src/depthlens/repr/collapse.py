"""Neural-collapse statistics of one layer's labelled features.

Papyan, Han & Donoho (2020), "Prevalence of neural collapse during the terminal phase of
deep learning training"; per layer as in "Linguistic Collapse" (Wu & Papyan 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthlens.errors import DepthlensError


@dataclass(frozen=True)
class Collapse:
    """NC1 and the NC2 statistics of one layer."""

    nc1: float  # tr(Σ_W Σ_B⁺) / C
    equinorm: float  # std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖
    equiangular: float  # std over c ≠ c' of cos(μ_c − μ_G, μ_c' − μ_G)
    max_angle: float  # mean over c ≠ c' of |cos + 1/(C−1)| (0 for a simplex ETF)


def class_means(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, d) class means in label order, and the labels mapped to 0..C-1."""
    classes, inv = torch.unique(y, return_inverse=True)
    if classes.numel() < 2:
        raise DepthlensError(
            f"neural collapse needs at least 2 classes, the data has {classes.numel()}"
        )
    sums = torch.zeros(classes.numel(), x.shape[1], dtype=torch.float64).index_add_(0, inv, x)
    counts = torch.bincount(inv, minlength=classes.numel()).double()
    return sums / counts[:, None], inv


def collapse(x: torch.Tensor, y: torch.Tensor) -> Collapse:
    """NC1 and NC2 of features ``x`` (N, d) with integer labels ``y`` (N,).

    Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/C) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ,
    μ_G the global mean. With M the (C, d) centred means, Σ_B⁺ = C·M⁺M⁺ᵀ, so
    tr(Σ_W Σ_B⁺)/C = ‖E M⁺‖²_F / N with E the (N, d) within-class deviations: no d×d matrix.
    """
    x = x.double()
    mu, inv = class_means(x, y)
    c = mu.shape[0]
    m = mu - x.mean(0)  # (C, d)
    e = x - mu[inv]  # (N, d)
    nc1 = float((e @ torch.linalg.pinv(m)).pow(2).sum() / x.shape[0])
    norms = m.norm(dim=1)
    unit = m / norms.clamp_min(1e-12)[:, None]
    cos = unit @ unit.T
    off = cos[~torch.eye(c, dtype=torch.bool)]
    return Collapse(
        nc1=nc1,
        equinorm=float(norms.std() / norms.mean().clamp_min(1e-12)),
        equiangular=float(off.std()) if off.numel() > 1 else 0.0,
        max_angle=float((off + 1.0 / (c - 1)).abs().mean()),
    )
