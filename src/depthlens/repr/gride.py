"""GRIDE: intrinsic dimension as a function of the neighbourhood scale.

Denti, Doimo, Laio & Mira (2022), "The generalized ratios intrinsic dimension estimator"
(Sci. Rep. 12, 20005). For each point, μ = r_{n2} / r_{n1} with n2 = 2·n1 (the distances
to its n1-th and n2-th nearest neighbours) has the density

    f(μ | d) = d (μ^d − 1)^{n2−n1−1} / (μ^{(n2−1)d + 1} B(n2 − n1, n1)),

and the dimension at scale n1 is the maximum-likelihood d. n1 = 1, 2, 4, … probes larger
and larger neighbourhoods; n1 = 1 is TwoNN's maximum-likelihood form. A dimension that
drifts with the scale says the data is not one manifold of one dimension at these scales
(noise inflates small scales; curvature and clusters move larger ones).

The solver follows DADApy's reference (``return_id_scaling_gride``) so the two agree:
the score equation Σ[((1 − n2 + n1)/(1 − μ^−d) + n2 − 1) log μ] = (N − 1)/d solved by
bisection on [0.001, 1000] to 1e-7, after dropping μ above 20·(q95 − q50) + q50 (points
whose neighbours overlap). Exact duplicates (r_{n1} = 0) are dropped first and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthlens.errors import DepthlensError


@dataclass(frozen=True)
class GrideScale:
    """The dimension at one scale: ranks (n1, n2), the mean distance of those neighbours."""

    n1: int
    n2: int
    dim: float
    dim_err: float  # 1/√(Fisher information) at the estimate
    scale: float  # mean of r_{n1} and r_{n2} over the points, DADApy's "rs_scaling"


def neighbour_distances(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted distances of every row of ``x`` (n, d) to its ``k`` nearest others: (n, k)."""
    x = x.double()
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min_(0.0)  # (n, n)
    d2.fill_diagonal_(float("inf"))
    return d2.topk(k, dim=1, largest=False).values.sqrt()  # ascending


def _score(d: torch.Tensor, log_mu: torch.Tensor, n1: int, n2: int) -> torch.Tensor:
    """Minus the derivative of the log-likelihood in d (DADApy's ``_neg_dloglik_did``)."""
    one_m = (1.0 - torch.exp(-d * log_mu)).clamp_min(2e-7)
    return (((1 - n2 + n1) / one_m + n2 - 1.0) * log_mu).sum() - (log_mu.numel() - 1) / d


def _fisher(d: float, log_mu: torch.Tensor, n1: int, n2: int) -> float:
    one_m = (1.0 - torch.exp(-d * log_mu)).clamp_min(1e-10)
    j1 = ((n2 - n1 - 1) * (log_mu / one_m) ** 2 * torch.exp(-d * log_mu)).sum()
    return float(log_mu.numel() / d**2 + j1)


def gride_mle(mu: torch.Tensor, n1: int, n2: int, eps: float = 1e-7) -> tuple[float, float]:
    """Maximum-likelihood dimension (and its error) from the ratios ``mu`` at ranks n1, n2."""
    mu = mu.double()
    q95, q50 = torch.quantile(mu, torch.tensor([0.95, 0.5], dtype=torch.float64)).tolist()
    mu = mu[mu < 20 * (q95 - q50) + q50]
    if mu.numel() < 3:
        raise DepthlensError("GRIDE: fewer than 3 usable points; raise --max-samples")
    log_mu = mu.clamp_min(1.0 + 1e-15).log()
    lo, hi = 0.001, 1000.0
    s_hi = float(_score(torch.tensor(hi, dtype=torch.float64), log_mu, n1, n2))
    while abs(hi - lo) > eps:
        mid = (lo + hi) / 2.0
        s_mid = float(_score(torch.tensor(mid, dtype=torch.float64), log_mu, n1, n2))
        if s_mid * s_hi > 0:
            hi, s_hi = mid, s_mid
        else:
            lo = mid
    d = (lo + hi) / 2.0
    return d, 1.0 / math.sqrt(_fisher(d, log_mu, n1, n2))


def gride_scaling(x: torch.Tensor, range_max: int = 64) -> tuple[list[GrideScale], int]:
    """GRIDE at n1 = 1, 2, 4, … with n2 = 2·n1 ≤ ``range_max``; and the duplicates dropped."""
    n = x.shape[0]
    k = min(range_max, n - 1)
    if k < 2:
        raise DepthlensError(f"GRIDE needs at least 3 samples, got {n}")
    r = neighbour_distances(x, k)  # (n, k): r[:, j] is the (j+1)-th neighbour
    distinct = r[:, 0] > 0
    r = r[distinct]
    out = []
    n1 = 1
    while 2 * n1 <= k:
        n2 = 2 * n1
        mu = r[:, n2 - 1] / r[:, n1 - 1]
        d, err = gride_mle(mu, n1, n2)
        scale = float((r[:, n1 - 1].mean() + r[:, n2 - 1].mean()) / 2)
        out.append(GrideScale(n1, n2, d, err, scale))
        n1 *= 2
    return out, int(n - int(distinct.sum()))
