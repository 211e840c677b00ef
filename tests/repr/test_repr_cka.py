"""Streamed minibatch CKA against the U-statistic definition and the full-batch computation."""

from __future__ import annotations

import itertools

import pytest
import torch

from depthlens.repr.cka import StreamingCKA, linear_cka_biased
from depthlens.repr.run import CkaBuffer


def hsic_u_statistic(k: torch.Tensor, l: torch.Tensor) -> float:
    """Song et al. (2012): the U-statistic over distinct 4-tuples, straight from its definition."""
    n = k.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += float(k[i, j] * (l[i, j] + l[q, r] - 2 * l[i, q]))
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def test_one_batch_equals_the_u_statistic_definition() -> None:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(7, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    xs.append(xs[0] @ torch.randn(5, 3, generator=g, dtype=torch.float64))  # related layer
    cka = StreamingCKA(3)
    cka.update(xs)
    grams = [x @ x.T for x in xs]
    h = torch.tensor([[hsic_u_statistic(a, b) for b in grams] for a in grams], dtype=torch.float64)
    want = h / torch.sqrt(torch.outer(h.diagonal(), h.diagonal()))
    assert torch.allclose(cka.result(), want, atol=1e-10)


def test_streaming_equals_the_mean_over_the_same_minibatches() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(50, 6, generator=g, dtype=torch.float64)
    feats = [
        base,
        base @ torch.randn(6, 4, generator=g, dtype=torch.float64) + 0.1,
        torch.randn(50, 8, generator=g, dtype=torch.float64),
    ]
    cka = StreamingCKA(3)
    buf = CkaBuffer(cka, 16)
    for s in (slice(0, 9), slice(9, 30), slice(30, 50)):  # arrivals not aligned to batches
        buf.add([f[s] for f in feats])
    buf.flush()
    assert (cka.n_batches, cka.n_examples, cka.n_dropped) == (3, 48, 2)  # 16+16+16, 2 left
    hs = torch.zeros(3, 3, dtype=torch.float64)
    for s in (slice(0, 16), slice(16, 32), slice(32, 48), slice(48, 50)):
        grams = [f[s] @ f[s].T for f in feats]
        if s.stop - s.start >= 4:
            hs += torch.tensor([[_hsic1(a, b) for b in grams] for a in grams], dtype=torch.float64)
    want = hs / torch.sqrt(torch.outer(hs.diagonal(), hs.diagonal()))
    assert torch.allclose(cka.result(), want, atol=1e-10)


def _hsic1(k: torch.Tensor, l: torch.Tensor) -> float:
    n = k.shape[0]
    kt, lt = k - torch.diag(k.diagonal()), l - torch.diag(l.diagonal())
    one = torch.ones(n, dtype=k.dtype)
    return float(
        (
            torch.trace(kt @ lt)
            + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)
        )
        / (n * (n - 3))
    )


def test_cka_is_invariant_to_rotation_and_scale_and_close_to_biased_cka() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(400, 10, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    y = torch.randn(400, 10, generator=g, dtype=torch.float64)
    cka = StreamingCKA(3)
    cka.update([x, 3.0 * x @ q, y])
    r = cka.result()
    assert r[0, 1] == pytest.approx(1.0, abs=1e-10)
    assert abs(float(r[0, 2])) < 0.05  # independent features: unbiased CKA near 0
    assert linear_cka_biased(x, y) > float(r[0, 2])  # the biased estimator is inflated


def test_cross_model_cka_has_one_row_per_layer_of_a() -> None:
    g = torch.Generator().manual_seed(3)
    a = [torch.randn(20, 4, generator=g) for _ in range(3)]
    b = [a[1] * 2.0, torch.randn(20, 5, generator=g)]
    cka = StreamingCKA(3, 2)
    cka.update(a, b)
    r = cka.result()
    assert r.shape == (3, 2) and float(r[1, 0]) == pytest.approx(1.0, abs=1e-6)
