"""Linear CKA between layers, streamed with the unbiased minibatch HSIC estimator.

CKA is Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network
Representations Revisited". The streamed form is Nguyen, Raghu & Kornblith (2021), "Do
Wide and Deep Networks Learn the Same Things?": for minibatches i = 1..k of n_i ≥ 4
examples with linear Gram matrices K_i = X_i X_iᵀ, L_i = Y_i Y_iᵀ,

    CKA = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) · mean_i HSIC_1(L_i, L_i))

with HSIC_1 the unbiased estimator of Song et al. (2012). Memory is O(layers² + layers·n²)
for any number of examples. With a single batch holding every example it is exactly the
full-batch unbiased CKA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from depthlens.errors import DepthlensError

MIN_BATCH = 4  # HSIC_1 divides by n(n-3)


def _gram_terms(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per layer: K̃ flattened (Ly, n²), 1ᵀK̃1 (Ly,), K̃1 (Ly, n); K̃ = Gram with zero diagonal."""
    vs, ss, rs = [], [], []
    for x in feats:
        x = x.double()
        k = x @ x.T  # (n, n)
        k.fill_diagonal_(0.0)
        r = k.sum(1)
        vs.append(k.reshape(-1))
        rs.append(r)
        ss.append(r.sum())
    return torch.stack(vs), torch.stack(ss), torch.stack(rs)


def hsic1_matrix(
    a: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    n: int,
) -> torch.Tensor:
    """HSIC_1 between every layer of ``a`` and every layer of ``b`` on one batch of n examples.

    HSIC_1(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)).
    """
    va, sa, ra = a
    vb, sb, rb = b
    tr = va @ vb.T  # tr(K̃ L̃) = <K̃, L̃> for symmetric K̃
    return (tr + torch.outer(sa, sb) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ra @ rb.T)) / (
        n * (n - 3)
    )


class StreamingCKA:
    """Accumulates mean HSIC_1 over minibatches for all layer pairs of one or two models."""

    def __init__(self, n_layers_a: int, n_layers_b: int | None = None) -> None:
        self.cross = n_layers_b is not None
        nb = n_layers_b if n_layers_b is not None else n_layers_a
        self.hab = torch.zeros(n_layers_a, nb, dtype=torch.float64)
        self.haa = torch.zeros(n_layers_a, dtype=torch.float64)
        self.hbb = torch.zeros(nb, dtype=torch.float64)
        self.n_batches = 0
        self.n_examples = 0
        self.n_dropped = 0

    def update(
        self, feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor] | None = None
    ) -> None:
        """Add one minibatch: per layer (n, d) features of the same n examples."""
        n = int(feats_a[0].shape[0])
        if n < MIN_BATCH:
            self.n_dropped += n
            return
        ta = _gram_terms(feats_a)
        if self.cross:
            if feats_b is None or int(feats_b[0].shape[0]) != n:
                raise ValueError("cross-model CKA needs features of the same examples")
            tb = _gram_terms(feats_b)
            self.hab += hsic1_matrix(ta, tb, n)
            self.haa += _self_hsic(ta, n)
            self.hbb += _self_hsic(tb, n)
        else:
            h = hsic1_matrix(ta, ta, n)
            self.hab += h
            self.haa += h.diagonal()
            self.hbb += h.diagonal()
        self.n_batches += 1
        self.n_examples += n

    def result(self) -> torch.Tensor:
        """CKA matrix (La, Lb); NaN where a layer's self-HSIC is not positive."""
        if self.n_batches == 0:
            raise DepthlensError(
                f"CKA saw no minibatch of at least {MIN_BATCH} examples; give it more data"
            )
        denom = torch.sqrt(torch.outer(self.haa, self.hbb).clamp_min(0.0))
        out = self.hab / denom
        out[denom <= 0] = float("nan")
        return out


def _self_hsic(t: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n: int) -> torch.Tensor:
    v, s, r = t
    return ((v * v).sum(1) + s * s / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (r * r).sum(1)) / (
        n * (n - 3)
    )


def split_batches(n: int, batch: int) -> list[slice]:
    """Consecutive slices of ``batch`` examples; the remainder is its own (maybe short) slice."""
    return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


def linear_cka_biased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Full-batch linear CKA of Kornblith et al. (2019), centred features: the classic form."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    num = (y.T @ x).norm() ** 2
    return float(num / ((x.T @ x).norm() * (y.T @ y).norm()))
