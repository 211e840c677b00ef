"""Geometry of one layer's states: anisotropy, TwoNN and PCA intrinsic dimension.

Anisotropy and intrinsic dimension as in "The Shape of Learning" (Razzhigaev et al. 2023);
the TwoNN estimator is Facco, d'Errico, Rodriguez & Laio (2017). All functions take a
capped, seeded sample ``x`` of shape (n, d) and compute in float64 on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthlens.errors import DepthlensError

EPS = 1e-12


def anisotropy(x: torch.Tensor, centred: bool = False) -> float:
    """Mean cosine over all distinct pairs of rows of ``x`` (n, d).

    Every unordered pair i ≠ j of the (already random) sample counts once, computed exactly
    from the sum of unit vectors: Σ_{i≠j} u_i·u_j = ‖Σ u_i‖² − n. ``centred`` subtracts the
    sample mean first (the anisotropy that is left once the common direction is removed).
    """
    x = x.double()
    n = x.shape[0]
    if n < 2:
        raise DepthlensError(f"anisotropy needs at least 2 samples, got {n}")
    if centred:
        x = x - x.mean(0, keepdim=True)
    u = x / x.norm(dim=1, keepdim=True).clamp_min(EPS)
    s = u.sum(0)
    return float((s @ s - (u * u).sum()) / (n * (n - 1)))


@dataclass(frozen=True)
class TwoNN:
    """TwoNN result: the dimension, points used, and points dropped as duplicates."""

    dim: float
    dim_mle: float
    n_used: int
    n_duplicates: int
    discard_fraction: float


def two_nn(x: torch.Tensor, discard_fraction: float = 0.1) -> TwoNN:
    """TwoNN intrinsic dimension (Facco et al. 2017) of the rows of ``x`` (n, d).

    μ_i = r2/r1 (second over first nearest-neighbour distance). Facco's estimator: the
    slope through the origin of −log(1 − F(μ)) against log μ, with F the empirical CDF and
    the largest ``discard_fraction`` of μ dropped (their 10%). ``dim_mle`` is the maximum
    likelihood form (n − 1) / Σ log μ_i on all points. Points with r1 = 0 (exact
    duplicates) are dropped and counted.
    """
    x = x.double()
    n = x.shape[0]
    if n < 3:
        raise DepthlensError(f"TwoNN needs at least 3 samples, got {n}")
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min_(0.0)  # (n, n)
    d2.fill_diagonal_(float("inf"))
    r2 = d2.topk(2, dim=1, largest=False).values  # (n, 2) squared: r1² <= r2²
    ok = r2[:, 0] > 1e-12 * (1.0 + sq)  # below the rounding of the expansion: a duplicate
    r = r2.sqrt()
    mu = (r[ok, 1] / r[ok, 0]).sort().values
    m = int(mu.numel())
    if m < 3:
        raise DepthlensError("TwoNN: fewer than 3 distinct points; raise --max-samples")
    log_mu = mu.log()
    dim_mle = (m - 1) / float(log_mu.sum().clamp_min(EPS))
    keep = max(2, int(math.floor(m * (1.0 - discard_fraction))))
    f = torch.arange(1, m + 1, dtype=torch.float64) / m  # empirical CDF at the sorted μ
    xs, ys = log_mu[:keep], -torch.log1p(-f[:keep])
    dim = float((xs * ys).sum() / (xs * xs).sum().clamp_min(EPS))
    return TwoNN(dim, dim_mle, m, n - m, discard_fraction)


def pca_dim(x: torch.Tensor, threshold: float = 0.9) -> int:
    """Number of principal components needed to explain ``threshold`` of the variance."""
    x = x.double()
    x = x - x.mean(0, keepdim=True)
    gram = x @ x.T if x.shape[0] < x.shape[1] else x.T @ x  # same non-zero spectrum, smaller
    s = torch.linalg.eigvalsh(gram).flip(0).clamp_min(0.0)  # squared singular values, descending
    total = float(s.sum())
    if total <= 0:
        return 0
    frac = torch.cumsum(s, 0) / total
    return int((frac < threshold - 1e-12).sum()) + 1


def sample_indices(n_total: int, cap: int, seed: int) -> torch.Tensor:
    """A seeded sorted subset of ``min(cap, n_total)`` indices out of ``n_total``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=gen)[: min(cap, n_total)].sort().values


def duplicate_rows(x: torch.Tensor) -> int:
    """Rows of ``x`` (n, d) that repeat an earlier row exactly: n − number of distinct rows."""
    return int(x.shape[0] - torch.unique(x, dim=0).shape[0])


def distinct_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every exact repeat of a row removed (first occurrences kept, order kept)."""
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), x.shape[0], dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(x.shape[0]), reduce="amin")
    return x[first.sort().values]


def massive_rows(x: torch.Tensor, k: float) -> torch.Tensor:
    """Boolean mask of rows whose norm exceeds ``k`` × the median row norm.

    Massive activations (Sun, Chen, Kolter & Liu 2024): a few positions carry states
    orders of magnitude larger than the rest and take most of the variance; PCA and
    anisotropy then describe those few points, not the bulk.
    """
    norms = x.double().norm(dim=1)
    return norms > k * norms.median()
