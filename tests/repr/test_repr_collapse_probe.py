"""Neural collapse and linear probes against naive computations."""

from __future__ import annotations

import pytest
import torch

from depthlens.errors import DepthlensError
from depthlens.repr.collapse import collapse
from depthlens.repr.probe import fit_probe


def _clusters(
    n: int, c: int, d: int, spread: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=g, dtype=torch.float64) * 3
    y = torch.arange(n) % c
    return means[y] + spread * torch.randn(n, d, generator=g, dtype=torch.float64), y


def test_nc1_equals_the_trace_formula_with_explicit_covariances() -> None:
    x, y = _clusters(300, 4, 12, 1.0, 0)
    y = torch.where(torch.arange(300) < 20, torch.zeros_like(y), y)  # unbalanced classes
    mu_g = x.mean(0)
    classes = torch.unique(y)
    mus = torch.stack([x[y == k].mean(0) for k in classes])
    sw = sum(((x[y == k] - mus[i]).T @ (x[y == k] - mus[i])) for i, k in enumerate(classes))
    sw = sw / x.shape[0]
    sb = sum(torch.outer(m - mu_g, m - mu_g) for m in mus) / len(classes)
    want = float(torch.trace(sw @ torch.linalg.pinv(sb, hermitian=True)) / len(classes))
    assert collapse(x, y).nc1 == pytest.approx(want, rel=1e-8)


def test_nc1_falls_as_classes_tighten_and_nc2_is_zero_for_a_simplex() -> None:
    loose, tight = collapse(*_clusters(400, 5, 8, 2.0, 1)), collapse(*_clusters(400, 5, 8, 0.1, 1))
    assert tight.nc1 < loose.nc1 / 50
    c = 4  # simplex ETF: centred one-hot vectors, every class mean equinorm and equiangular
    means = torch.eye(c, dtype=torch.float64) - 1.0 / c
    y = torch.arange(40) % c
    etf = collapse(means[y], y)
    assert etf.nc1 == pytest.approx(0.0, abs=1e-12)
    assert etf.equinorm == pytest.approx(0.0, abs=1e-9)
    assert etf.equiangular == pytest.approx(0.0, abs=1e-9)
    assert etf.max_angle == pytest.approx(0.0, abs=1e-9)
    assert loose.max_angle > 0.05


def test_one_class_is_refused() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(DepthlensError, match="2 classes"):
        collapse(x, torch.zeros(10, dtype=torch.long))
    with pytest.raises(DepthlensError, match="2 classes"):
        fit_probe(x, torch.zeros(10, dtype=torch.long))


def test_probe_decodes_separable_labels_and_not_random_ones() -> None:
    x, y = _clusters(600, 3, 10, 1.0, 2)
    p = fit_probe(x[:400], y[:400])
    assert p.accuracy(x[400:], y[400:]) > 0.95
    shuffled = y[torch.randperm(600, generator=torch.Generator().manual_seed(0))]
    q = fit_probe(x[:400], shuffled[:400])
    assert q.accuracy(x[400:], shuffled[400:]) < 0.5  # chance is 1/3
    labels = torch.tensor([7, 9, 11])[y]  # arbitrary label values come back unchanged
    assert fit_probe(x, labels).accuracy(x, labels) > 0.95
