"""Early-exit rules (CALM, Schuster et al. 2022, arXiv 2207.07061) on a lens readout.

A token exits at the first depth e (blocks applied, 1..L) where its rule fires; a token
whose rule never fires runs all L blocks (depth L is the model's own output).

Each kind of rule is one :class:`RuleKind` record in :data:`EXIT_RULES` (a
:class:`~depthlens.registry.Registry`) that carries its test (on every depth at once, and for
one token while decoding), its threshold check, its label and its default sweep;
``depthlens exit``'s ``--KIND`` flags, the curve, the decoder and docs/TUNED_LENS.md's table
read the records. :class:`ExitRule` is one kind with one threshold.

- ``confidence τ``: the lens's top-1 probability at depth e is ≥ τ (CALM's softmax
  response), τ in (0, 1].
- ``entropy τ``: the entropy of the lens distribution at depth e is ≤ τ nats, τ in
  [0, ln V].
- ``settled k``: the top-1 token is unchanged over the last k layers (depths e-k..e read
  the same token), an integer k in 1..L-1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from depthlens.errors import DepthlensError
from depthlens.registry import Registry

#: (threshold, conf, ent, top1) -> (N, L) bool: fires at depth e (column e-1), before the
#: min-depth and last-depth rules; conf, ent: (N, L) top-1 probability and entropy, top1:
#: (N, L) token ids.
FiresAll = Callable[[float, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: (threshold, conf, ent, history) -> fires for one token; history: top-1 at depths 1..e.
FiresOne = Callable[[float, float, float, list[int]], bool]
#: (threshold, n_layers, vocab) -> None, or a DepthlensError naming the range.
Validate = Callable[[float, "int | None", "int | None"], None]


@dataclass(frozen=True)
class RuleKind:
    """One kind of exit rule: what it tests, its threshold's range and its default sweep."""

    name: str
    symbol: str  # the threshold's letter in the docs: τ, k
    fires_when: str  # the test in words (docs)
    threshold_range: str  # (docs)
    metavar: str  # the CLI flag's placeholder
    help: str  # the CLI flag's help
    default_sweep: tuple[float, ...]
    validate: Validate
    fires_all: FiresAll
    fires_one: FiresOne
    label: Callable[[float], str]


EXIT_RULES: Registry[RuleKind] = Registry(
    "exit rule",
    columns=(
        ("rule", lambda r: f"`{r.name} {r.symbol}`"),
        ("fires when", lambda r: r.fires_when),
        ("threshold range", lambda r: r.threshold_range),
        ("default sweep", lambda r: ", ".join(f"{v:g}" for v in r.default_sweep)),
    ),
)


def _check_confidence(t: float, n_layers: int | None, vocab: int | None) -> None:
    if not 0 < t <= 1:
        raise DepthlensError(
            f"--confidence threshold {t} is outside (0, 1]: it is a top-1 probability, e.g. 0.9"
        )


def _check_entropy(t: float, n_layers: int | None, vocab: int | None) -> None:
    top = math.log(vocab) if vocab else math.inf
    if not 0 <= t <= top:
        bound = f"ln V = {top:.3g}" if vocab else "ln V"  # V unknown: no "ln V = inf"
        raise DepthlensError(f"--entropy threshold {t:g} is outside [0, {bound}] nats, e.g. 0.5")


def _check_settled(t: float, n_layers: int | None, vocab: int | None) -> None:
    hi = (n_layers - 1) if n_layers else None
    if t != int(t) or t < 1 or (hi is not None and t > hi):
        raise DepthlensError(
            f"--settled k={t:g} must be a whole number of layers in "
            f"1..{hi if hi is not None else 'L-1'}, e.g. 3"
        )


def _settled_all(
    t: float, conf: torch.Tensor, ent: torch.Tensor, top1: torch.Tensor
) -> torch.Tensor:
    k = int(t)
    n, n_layers = top1.shape
    out = torch.zeros(n, n_layers, dtype=torch.bool)
    same = top1[:, 1:] == top1[:, :-1]  # (N, L-1): column j-1 says depth j+1 == depth j
    for e in range(k + 1, n_layers + 1):  # depth e needs depths e-k..e, all ≥ 1
        out[:, e - 1] = same[:, e - 1 - k : e - 1].all(dim=1)
    return out


def _settled_one(t: float, conf: float, ent: float, history: list[int]) -> bool:
    k = int(t)
    return len(history) >= k + 1 and len(set(history[-(k + 1) :])) == 1


EXIT_RULES.register(
    RuleKind(
        name="confidence",
        symbol="τ",
        help="top-1 probability thresholds in (0, 1] (default a sweep)",
        fires_when="top-1 probability ≥ τ (CALM's softmax response)",
        threshold_range="(0, 1]",
        metavar="T,T",
        default_sweep=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99),
        validate=_check_confidence,
        fires_all=lambda t, conf, ent, top1: conf >= t,
        fires_one=lambda t, conf, ent, history: conf >= t,
        label=lambda t: f"confidence≥{t:g}",
    )
)
EXIT_RULES.register(
    RuleKind(
        name="entropy",
        symbol="τ",
        help="entropy thresholds in nats, [0, ln V] (default a sweep)",
        fires_when="entropy ≤ τ nats",
        threshold_range="[0, ln V]",
        metavar="T,T",
        default_sweep=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
        validate=_check_entropy,
        fires_all=lambda t, conf, ent, top1: ent <= t,
        fires_one=lambda t, conf, ent, history: ent <= t,
        label=lambda t: f"entropy≤{t:g}",
    )
)
EXIT_RULES.register(
    RuleKind(
        name="settled",
        symbol="k",
        help="top-1 unchanged over K layers, 1..L-1 (default a sweep)",
        fires_when="the top-1 token is the same at depths e-k..e",
        threshold_range="whole k in 1..L-1",
        metavar="K,K",
        default_sweep=(1, 2, 3, 4, 6, 8),
        validate=_check_settled,
        fires_all=_settled_all,
        fires_one=_settled_one,
        label=lambda t: f"settled k={int(t)}",
    )
)

#: The rule names, read live (iterating the registry gives its names in registration order).
RULES: Registry[RuleKind] = EXIT_RULES


@dataclass(frozen=True)
class ExitRule:
    """One rule with one threshold; ``min_depth``: the first depth where it may fire."""

    kind: str
    threshold: float
    min_depth: int = 1

    @property
    def record(self) -> RuleKind:
        """The kind's record (a did-you-mean error for an unknown kind)."""
        return EXIT_RULES.get(self.kind)

    def check(self, n_layers: int | None = None, vocab: int | None = None) -> None:
        """Refuse thresholds outside the rule's range (one actionable line)."""
        record = self.record
        if not math.isfinite(self.threshold):
            raise DepthlensError(f"--{self.kind} threshold {self.threshold} is not a finite number")
        record.validate(self.threshold, n_layers, vocab)
        if self.min_depth < 1 or (n_layers is not None and self.min_depth > n_layers):
            last = n_layers if n_layers is not None else "L"
            raise DepthlensError(f"--min-depth {self.min_depth} must be in 1..{last}")

    def label(self) -> str:
        """``confidence≥0.9``, ``entropy≤0.5``, ``settled k=3``."""
        return self.record.label(self.threshold)


def fires(
    rule: ExitRule, conf: torch.Tensor, ent: torch.Tensor, top1: torch.Tensor
) -> torch.Tensor:
    """(N, L) bool: the rule fires at depth e (column e-1), given per-depth readings.

    ``conf``, ``ent``: (N, L) top-1 probability and entropy; ``top1``: (N, L) token ids.
    The last column (the model's own output) always fires.
    """
    out = rule.record.fires_all(rule.threshold, conf, ent, top1).clone()
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
    return rule.record.fires_one(rule.threshold, conf, ent, history)


def parse_thresholds(kind: str, text: str | None) -> tuple[float, ...]:
    """``"0.8,0.9"`` -> (0.8, 0.9); None -> the default sweep of ``kind``."""
    sweep = EXIT_RULES.get(kind).default_sweep
    if text is None:
        return sweep
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise DepthlensError(f"--{kind} takes comma-separated numbers, got '{text}'") from exc
    if not values:
        raise DepthlensError(
            f"--{kind} got no threshold; pass e.g. --{kind} {','.join(f'{v:g}' for v in sweep[:3])}"
        )
    return values
