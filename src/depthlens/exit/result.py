"""The typed result of ``depthlens exit``, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from depthlens.results import Envelope, Enveloped


@dataclass(frozen=True)
class ExitResult(Enveloped):
    """The quality/compute curve of every exit rule × threshold on held-out text.

    ``rules``: {rule: [one point per threshold]}; a point holds its threshold and label,
    the exit records' values by their names (:mod:`depthlens.metrics.catalog.exit`), the
    ideal speed-up, the share exited early and the histogram of exit depths 1..L.
    """

    envelope: Envelope
    full_model: dict[str, Any]  # {"perplexity", "depth"}: the full model's own numbers
    rules: dict[str, list[dict[str, Any]]]
    n_tokens: int
    n_ce_tokens: int
    lens_used: dict[str, Any] = field(default_factory=dict)
    flops_per_token: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = "depthlens.exit"
