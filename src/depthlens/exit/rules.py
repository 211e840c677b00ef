"""Early-exit rules (CALM, Schuster et al. 2022, arXiv 2207.07061) on a lens readout.

A token exits at the first depth e (blocks applied, 1..L) where its rule fires; a token
whose rule never fires runs all L blocks (depth L is the model's own output).

- ``confidence τ``: the lens's top-1 probability at depth e is ≥ τ (CALM's softmax
  response), τ in (0, 1].
- ``entropy τ``: the entropy of the lens distribution at depth e is ≤ τ nats, τ in
  [0, ln V].
- ``settled k``: the top-1 token is unchanged over the last k layers (depths e-k..e read
  the same token), an integer k in 1..L-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from depthlens.errors import DepthlensError
from depthlens.metrics.registry import unknown_choice

RuleKind = Literal["confidence", "entropy", "settled"]
RULES: tuple[RuleKind, ...] = ("confidence", "entropy", "settled")

DEFAULT_SWEEPS: dict[str, tuple[float, ...]] = {
    "confidence": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99),
    "entropy": (0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
    "settled": (1, 2, 3, 4, 6, 8),
}


@dataclass(frozen=True)
class ExitRule:
    """One rule with one threshold; ``min_depth``: the first depth where it may fire."""

    kind: RuleKind
    threshold: float
    min_depth: int = 1

    def check(self, n_layers: int | None = None, vocab: int | None = None) -> None:
        """Refuse thresholds outside the rule's range (one actionable line)."""
        t, name = self.threshold, f"--{self.kind}"
        if self.kind not in RULES:
            raise DepthlensError(unknown_choice("exit rule", self.kind, list(RULES)))
        if not math.isfinite(t):
            raise DepthlensError(f"{name} threshold {t} is not a finite number")
        if self.kind == "confidence" and not 0 < t <= 1:
            raise DepthlensError(
                f"{name} threshold {t} is outside (0, 1]: it is a top-1 probability, e.g. 0.9"
            )
        if self.kind == "entropy":
            top = math.log(vocab) if vocab else math.inf
            if not 0 <= t <= top:
                bound = f"ln V = {top:.3g}" if vocab else "ln V"  # V unknown: no "ln V = inf"
                raise DepthlensError(
                    f"{name} threshold {t:g} is outside [0, {bound}] nats, e.g. 0.5"
                )
        if self.kind == "settled":
            hi = (n_layers - 1) if n_layers else None
            if t != int(t) or t < 1 or (hi is not None and t > hi):
                raise DepthlensError(
                    f"{name} k={t:g} must be a whole number of layers in "
                    f"1..{hi if hi is not None else 'L-1'}, e.g. 3"
                )
        if self.min_depth < 1 or (n_layers is not None and self.min_depth > n_layers):
            last = n_layers if n_layers is not None else "L"
            raise DepthlensError(f"--min-depth {self.min_depth} must be in 1..{last}")

    def label(self) -> str:
        """``confidence≥0.9``, ``entropy≤0.5``, ``settled k=3``."""
        sym = {"confidence": "≥", "entropy": "≤"}.get(self.kind)
        return f"{self.kind}{sym}{self.threshold:g}" if sym else f"settled k={int(self.threshold)}"


def fires(
    rule: ExitRule, conf: torch.Tensor, ent: torch.Tensor, top1: torch.Tensor
) -> torch.Tensor:
    """(N, L) bool: the rule fires at depth e (column e-1), given per-depth readings.

    ``conf``, ``ent``: (N, L) top-1 probability and entropy; ``top1``: (N, L) token ids.
    The last column (the model's own output) always fires.
    """
    n, n_layers = top1.shape
    if rule.kind == "confidence":
        out = conf >= rule.threshold
    elif rule.kind == "entropy":
        out = ent <= rule.threshold
    else:
        k = int(rule.threshold)
        out = torch.zeros(n, n_layers, dtype=torch.bool)
        same = top1[:, 1:] == top1[:, :-1]  # (N, L-1): column j-1 says depth j+1 == depth j
        for e in range(k + 1, n_layers + 1):  # depth e needs depths e-k..e, all ≥ 1
            out[:, e - 1] = same[:, e - 1 - k : e - 1].all(dim=1)
    out = out.clone()
    out[:, : rule.min_depth - 1] = False
    out[:, -1] = True
    return out


def exit_depth(
    rule: ExitRule, conf: torch.Tensor, ent: torch.Tensor, top1: torch.Tensor
) -> torch.Tensor:
    """(N,) the first depth (1..L) where ``rule`` fires."""
    return fires(rule, conf, ent, top1).float().argmax(dim=1) + 1


def fires_now(rule: ExitRule, depth: int, conf: float, ent: float, history: list[int]) -> bool:
    """The same rule for one token during decoding; ``history``: top-1 at depths 1..depth."""
    if depth < rule.min_depth:
        return False
    if rule.kind == "confidence":
        return conf >= rule.threshold
    if rule.kind == "entropy":
        return ent <= rule.threshold
    k = int(rule.threshold)
    return len(history) >= k + 1 and len(set(history[-(k + 1) :])) == 1


def parse_thresholds(kind: str, text: str | None) -> tuple[float, ...]:
    """``"0.8,0.9"`` -> (0.8, 0.9); None -> the default sweep of ``kind``."""
    if text is None:
        return DEFAULT_SWEEPS[kind]
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise DepthlensError(f"--{kind} takes comma-separated numbers, got '{text}'") from exc
    if not values:
        raise DepthlensError(
            f"--{kind} got no threshold; pass e.g. --{kind} "
            f"{','.join(f'{v:g}' for v in DEFAULT_SWEEPS[kind][:3])}"
        )
    return values
