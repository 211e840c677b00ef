"""The typed record of a healing run: what ``depthlens heal`` writes and every reader reads.

It sits in the healed checkpoint's ``depthlens.json`` (a :class:`CutManifest`) under
``healing``; its ``curve`` is the held-out perplexity against healing tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from depthlens.errors import DepthlensError
from depthlens.results import Envelope, Enveloped

HEAL_KIND = "depthlens.heal"


@dataclass(frozen=True)
class HealResult(Enveloped):
    """One healing run: the envelope describes the healed model, ``teacher`` the original."""

    envelope: Envelope
    teacher: dict[str, Any]  # identity of the model distilled from
    train: str  # lora | blocks | maps
    trained_modules: list[str]  # full names of what was adapted or unfrozen
    trainable_params: int
    steps: int  # optimizer steps taken
    healing_tokens: int  # real tokens read by those steps
    stopped: str  # "budget" (all steps), "early" (held-out curve stopped improving)
    seconds: float
    # Held-out perplexity vs healing tokens: {step, tokens, nll, ppl, lr, kl} per point,
    # the first at 0 tokens (the cut model before healing).
    curve: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # the curve point whose weights were kept
    eval_data: dict[str, Any] | None = None  # identity of the held-out windows
    cut_points: list[list[int]] = field(default_factory=list)
    log: list[dict[str, float]] = field(default_factory=list)  # per step: kl (mse), lr
    resumed_from: list[int] = field(default_factory=list)  # steps a rerun resumed at
    KIND: ClassVar[str] = HEAL_KIND

    @property
    def first_kl(self) -> float | None:
        """The distillation KL of the first step."""
        return self.log[0]["kl"] if self.log else None

    @property
    def last_kl(self) -> float | None:
        """The distillation KL of the last step."""
        return self.log[-1]["kl"] if self.log else None

    @property
    def ppl_before(self) -> float | None:
        """Held-out perplexity of the cut model before healing."""
        return self.curve[0]["ppl"] if self.curve else None

    @property
    def ppl_after(self) -> float | None:
        """Held-out perplexity of the healed model (the kept weights)."""
        return self.best["ppl"] if self.best else None

    def tokens_to_fraction(self, fraction: float = 0.9) -> int | None:
        """Healing tokens where the held-out NLL first reached ``fraction`` of its final gain.

        The final gain is that of the kept weights; this is where the returns flatten.
        """
        if not self.curve or self.best is None:
            return None
        start, end = self.curve[0]["nll"], self.best["nll"]
        if end >= start:
            return None
        for p in self.curve:
            if start - p["nll"] >= fraction * (start - end):
                return int(p["tokens"])
        return None

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> HealResult:
        """The healing record of a healed checkpoint directory."""
        from depthlens.models.manifest import load_manifest

        man = load_manifest(path)
        if man is None or man.healing is None:
            raise DepthlensError(f"{path} is not a healed checkpoint (no healing record)")
        return cls.from_dict(man.healing)
