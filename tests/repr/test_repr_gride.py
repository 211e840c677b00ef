"""GRIDE, duplicate and massive-activation handling, and cross-checks on known dimensions."""

from __future__ import annotations

import math

import pytest
import torch

from depthlens.repr.geometry import distinct_rows, duplicate_rows, massive_rows, two_nn
from depthlens.repr.gride import gride_mle, gride_scaling, neighbour_distances


def _manifold(n: int, dim: int, ambient: int, seed: int) -> torch.Tensor:
    """A ``dim``-dimensional Gaussian in a random ``dim``-plane of R^ambient."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(ambient, ambient, generator=g, dtype=torch.float64))
    return z @ q[:dim]


def _torus(n: int, seed: int) -> torch.Tensor:
    """The flat 2-torus in R^4 (cos, sin of two uniform angles): dimension 2, curved."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.cat([a.cos(), a.sin()], dim=1)


@pytest.mark.parametrize(("dim", "ambient"), [(3, 10), (6, 30)])
def test_gride_recovers_known_dimension_at_small_scales(dim: int, ambient: int) -> None:
    scales, dups = gride_scaling(_manifold(2000, dim, ambient, seed=dim), range_max=16)
    assert dups == 0 and [s.n1 for s in scales] == [1, 2, 4, 8]
    for s in scales:
        assert s.dim == pytest.approx(dim, rel=0.08), s  # within the estimator's own spread
        assert s.dim_err < 0.1 * dim
    assert scales[0].scale < scales[-1].scale  # larger ranks reach further


def test_gride_on_the_torus_is_two() -> None:
    scales, _ = gride_scaling(_torus(2000, seed=1), range_max=8)
    assert all(s.dim == pytest.approx(2.0, rel=0.06) for s in scales)


def test_gride_at_rank_one_is_twonns_maximum_likelihood() -> None:
    x = _manifold(500, 4, 12, seed=0)
    r = neighbour_distances(x, 2)
    mu = r[:, 1] / r[:, 0]
    q95, q50 = torch.quantile(mu, torch.tensor([0.95, 0.5], dtype=torch.float64)).tolist()
    kept = mu[mu < 20 * (q95 - q50) + q50]
    closed = (kept.numel() - 1) / float(kept.log().sum())  # the score equation at n1=1, n2=2
    d, _ = gride_mle(mu, 1, 2)
    assert d == pytest.approx(closed, abs=1e-6)
    assert two_nn(x).dim_mle == pytest.approx((500 - 1) / float(mu.log().sum()), rel=1e-12)


def test_gride_maximises_the_written_out_likelihood() -> None:
    """log f(μ|d) = log d + (n2−n1−1) log(μ^d − 1) − ((n2−1)d + 1) log μ − log B(n2−n1, n1)."""
    x = _manifold(1000, 5, 20, seed=2)
    r = neighbour_distances(x, 8)
    n1, n2 = 4, 8
    mu = r[:, n2 - 1] / r[:, n1 - 1]
    d_hat, _ = gride_mle(mu, n1, n2)

    def loglik(d: float) -> float:
        lm = mu.log()
        log_beta = math.lgamma(n2 - n1) + math.lgamma(n1) - math.lgamma(n2)
        terms = (
            math.log(d) + (n2 - n1 - 1) * torch.log(torch.expm1(d * lm)) - ((n2 - 1) * d + 1) * lm
        )
        return float(terms.sum()) - mu.numel() * log_beta

    grid = [d_hat * (1 + f) for f in (-0.05, -0.01, 0.01, 0.05)]
    assert all(loglik(d_hat) > loglik(d) for d in grid)


def test_duplicates_and_massive_rows() -> None:
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    y = torch.cat([x, x[:3], x[:1]])  # 4 repeats
    assert duplicate_rows(y) == 4 and duplicate_rows(x) == 0
    d = distinct_rows(y)
    assert d.shape == (10, 4) and torch.equal(d, x)  # first occurrences, in order
    z = x.clone()
    z[7] *= 1000.0
    mask = massive_rows(z, 10.0)
    assert mask.tolist() == [i == 7 for i in range(10)]


def test_twonn_agrees_with_scikit_dimension() -> None:
    skdim = pytest.importorskip(
        "skdim", reason="scikit-dimension is not installed (pip install depthlens[crosscheck])"
    )
    for x, want in ((_manifold(1500, 5, 20, seed=3), 5.0), (_torus(1500, seed=4), 2.0)):
        ours = two_nn(x).dim
        theirs = float(skdim.id.TwoNN().fit(x.numpy()).dimension_)
        assert ours == pytest.approx(theirs, rel=0.02)
        assert ours == pytest.approx(want, rel=0.1)


def test_gride_and_twonn_agree_with_dadapy() -> None:
    dadapy = pytest.importorskip(
        "dadapy",
        reason="DADApy is not installed: 0.3.4 pins numpy<2 and jax 0.4.30, which do not "
        "install beside this torch; the written-out likelihood test stands in for it",
    )
    x = _manifold(1500, 5, 20, seed=5)
    data = dadapy.Data(x.numpy())
    ids, _, _ = data.return_id_scaling_gride(range_max=16)
    ours, _ = gride_scaling(x, range_max=16)
    for a, b in zip(ids, ours, strict=True):
        assert b.dim == pytest.approx(float(a), rel=0.02)
    twonn_theirs = data.compute_id_2NN()[0]
    assert two_nn(x).dim == pytest.approx(float(twonn_theirs), rel=0.02)
