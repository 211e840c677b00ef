"""GRIDE, duplicate and massive-activation handling, and cross-checks on known dimensions."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from depthlens.repr.geometry import distinct_rows, duplicate_rows, massive_rows, two_nn
from depthlens.repr.gride import gride_mle, gride_scaling, neighbour_distances
from depthlens.repr.reference import dadapy_estimators


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


# The cross-checks run independent code on data of known dimension: scikit-dimension 0.5.0
# and DADApy 0.3.4's own GRIDE/TwoNN functions, as scripts/setup-crosscheck.sh places them
# (scripts/test.sh runs it; .venv/crosscheck, or $DEPTHLENS_CROSSCHECK).
SETUP = "run scripts/setup-crosscheck.sh (scripts/test.sh does)"


def _crosscheck_dir() -> Path:
    return Path(os.environ.get("DEPTHLENS_CROSSCHECK") or Path(sys.prefix) / "crosscheck")


def _import_site(module: str) -> Any:
    """``module`` from the cross-check folder, appended to sys.path so the venv's numpy wins."""
    site = str(_crosscheck_dir() / "site")
    if Path(site).is_dir() and site not in sys.path:
        sys.path.append(site)
    return pytest.importorskip(module, reason=f"{module} is not installed: {SETUP}")


def _known() -> list[tuple[str, torch.Tensor, float]]:
    """Gaussians in random planes, the flat torus and the 3-sphere: dimensions 3, 6, 2, 3."""
    g = torch.Generator().manual_seed(7)
    sphere = torch.randn(1500, 4, generator=g, dtype=torch.float64)
    return [
        ("gaussian d=3 in R^10", _manifold(1500, 3, 10, seed=11), 3.0),
        ("gaussian d=6 in R^30", _manifold(1500, 6, 30, seed=12), 6.0),
        ("flat torus d=2 in R^4", _torus(1500, seed=13), 2.0),
        ("sphere S^3 in R^4", sphere / sphere.norm(dim=1, keepdim=True), 3.0),
    ]


@pytest.mark.parametrize(("name", "x", "want"), _known(), ids=[k[0] for k in _known()])
def test_twonn_and_gride_agree_with_scikit_dimension(
    name: str, x: torch.Tensor, want: float
) -> None:
    skdim = _import_site("skdim")
    xn = x.numpy()
    ours = two_nn(x)
    assert ours.dim == pytest.approx(float(skdim.id.TwoNN().fit(xn).dimension_), rel=0.02)
    assert ours.dim == pytest.approx(want, rel=0.1)
    theirs = skdim.id.GRIDE(multiscale=True, range_max=16).fit(xn)
    scales, _ = gride_scaling(x, range_max=16)
    assert [s.n1 for s in scales] == theirs.scales_.tolist()
    for s, d in zip(scales, theirs.dimension_scales_, strict=True):
        assert s.dim == pytest.approx(float(d), rel=0.02), (name, s)
    assert scales[0].dim == pytest.approx(want, rel=0.1)


def _dadapy() -> tuple[Any, Any]:
    """DADApy's ``_utils/utils.py`` as a module and ``IdEstimation._compute_id_2NN``."""
    src = _crosscheck_dir() / "dadapy-0.3.4"
    if not (src / "dadapy/id_estimation.py").is_file():
        pytest.skip(f"DADApy's source (0.3.4) is not unpacked in {src.parent}: {SETUP}")
    _import_site("scipy")
    _import_site("sklearn")
    return dadapy_estimators(src)


@pytest.mark.parametrize(("name", "x", "want"), _known(), ids=[k[0] for k in _known()])
def test_twonn_and_gride_agree_with_dadapy(name: str, x: torch.Tensor, want: float) -> None:
    utils, twonn_dadapy = _dadapy()
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=17).fit(x.numpy()).kneighbors()  # 1st..17th
    r = np.concatenate([np.zeros((len(dist), 1)), dist], axis=1)  # DADApy's column 0: itself
    theirs = float(twonn_dadapy(None, r[:, 2] / r[:, 1], 0.9, "base"))
    assert two_nn(x).dim == pytest.approx(theirs, rel=0.02), name
    scales, _ = gride_scaling(x, range_max=16)
    for s in scales:
        k = s.n1
        d = utils._argmax_loglik(np.float64, 0.001, 1000, r[:, 2 * k] / r[:, k], k, 2 * k)
        assert s.dim == pytest.approx(float(d), rel=0.02), (name, s)
    assert scales[0].dim == pytest.approx(want, rel=0.1)
