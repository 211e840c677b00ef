"""Linear probes per layer: where linearly decodable information peaks.

A multinomial logistic regression on one layer's features, as in "Intermediate Layer
Classifiers" (Gromov-style linear read-outs of intermediate states; the deep supervision
of Lee et al. 2015, "Deeply-Supervised Nets", attaches such classifiers while training).
Features are standardised with the training split's mean and std; the fit is full-batch
L-BFGS with an L2 penalty, in float64, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthlens.errors import DepthlensError


@dataclass(frozen=True)
class ProbeOptions:
    """How each per-layer probe is fitted."""

    l2: float = 1e-3  # penalty on the weights (not the bias), times the mean loss
    max_iter: int = 100  # L-BFGS iterations

    def to_dict(self) -> dict[str, float]:
        """Options as written into results."""
        return {"l2": self.l2, "max_iter": self.max_iter}


@dataclass
class Probe:
    """A fitted linear probe: standardisation and the weights."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (d, C)
    bias: torch.Tensor  # (C,)
    classes: torch.Tensor  # (C,) original label values

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels (original values) for features ``x`` (n, d)."""
        z = (x.double() - self.mean) / self.std
        return self.classes[(z @ self.weight + self.bias).argmax(1)]

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Share of rows whose predicted label equals ``y``."""
        return float((self.predict(x) == y).double().mean())


def fit_probe(x: torch.Tensor, y: torch.Tensor, opts: ProbeOptions | None = None) -> Probe:
    """Fit a multinomial logistic regression to ``x`` (n, d) with labels ``y`` (n,)."""
    opts = opts or ProbeOptions()
    classes, target = torch.unique(y, return_inverse=True)
    if classes.numel() < 2:
        raise DepthlensError(
            f"a probe needs at least 2 classes in the training split, got {classes.numel()}; "
            "use labelled data with several classes"
        )
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], classes.numel(), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes.numel(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=opts.max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, target) + opts.l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    return Probe(mean, std, w.detach(), b.detach(), classes)
