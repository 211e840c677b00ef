"""Anisotropy, TwoNN and PCA dimension against naive computations and known dimensions."""

from __future__ import annotations

import itertools

import pytest
import torch

from depthlens.errors import DepthlensError
from depthlens.repr.geometry import anisotropy, pca_dim, sample_indices, two_nn


def test_anisotropy_is_the_mean_cosine_over_all_pairs() -> None:
    x = torch.randn(40, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.7
    cos = [
        float(torch.nn.functional.cosine_similarity(x[i], x[j], dim=0))
        for i, j in itertools.combinations(range(40), 2)
    ]
    assert anisotropy(x) == pytest.approx(sum(cos) / len(cos), abs=1e-12)
    xc = x - x.mean(0)
    cosc = [
        float(torch.nn.functional.cosine_similarity(xc[i], xc[j], dim=0))
        for i, j in itertools.combinations(range(40), 2)
    ]
    assert anisotropy(x, centred=True) == pytest.approx(sum(cosc) / len(cosc), abs=1e-12)
    assert anisotropy(x) > 0.2 > abs(anisotropy(x, centred=True))


def _embedded(n: int, dim: int, ambient: int, nonlinear: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g, dtype=torch.float64)
    if nonlinear:  # a curved 5-d manifold: smooth random features of z
        w = torch.randn(dim, ambient // 2, generator=g, dtype=torch.float64) / 3
        return torch.cat([torch.sin(z @ w), torch.cos(z @ w)], dim=1)
    q, _ = torch.linalg.qr(torch.randn(ambient, ambient, generator=g, dtype=torch.float64))
    return z @ q[:dim]  # (n, ambient), a 5-d linear subspace in random orientation


@pytest.mark.parametrize("nonlinear", [False, True])
def test_two_nn_finds_a_5d_manifold_in_200d_within_10_percent(nonlinear: bool) -> None:
    x = _embedded(2000, 5, 200, nonlinear, seed=1)
    est = two_nn(x)
    assert x.shape == (2000, 200)
    assert abs(est.dim - 5) <= 0.5, est
    assert abs(est.dim_mle - 5) <= 0.5, est
    assert est.n_used == 2000 and est.n_duplicates == 0


def test_two_nn_drops_and_counts_duplicates() -> None:
    x = _embedded(300, 3, 20, False, seed=2)
    x = torch.cat([x, x[:10]])
    est = two_nn(x)
    assert est.n_duplicates == 20 and est.n_used == 290
    with pytest.raises(DepthlensError):
        two_nn(torch.zeros(5, 3))


def test_pca_dim_counts_components_to_90_percent() -> None:
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    scales = torch.tensor([10.0, 5.0, 3.0, 1.0, 0.5] + [0.01] * 25, dtype=torch.float64)
    z = torch.randn(5000, 30, generator=g, dtype=torch.float64) * scales
    x = z @ q
    var = scales**2 / (scales**2).sum()
    for thr, k in ((0.9, 2), (0.95, 3), (0.995, 4), (0.9995, 5)):
        want = int((torch.cumsum(var, 0) < thr).sum()) + 1  # naive: from the known spectrum
        assert pca_dim(x, thr) == want == k


def test_sample_indices_are_seeded_capped_and_sorted() -> None:
    a, b = sample_indices(1000, 50, 7), sample_indices(1000, 50, 7)
    assert torch.equal(a, b) and a.numel() == 50 and bool((a[1:] > a[:-1]).all())
    assert not torch.equal(a, sample_indices(1000, 50, 8))
    assert sample_indices(10, 50, 0).numel() == 10
