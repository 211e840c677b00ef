"""The typed results of ``depthlens train`` (train.json) and ``study depth`` (study.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from depthlens.results import Envelope, Enveloped


@dataclass(frozen=True)
class TrainResult(Enveloped):
    """A finished training run: exactly what its ``train.json`` holds.

    The envelope's ``model`` is the saved model's identity (``ref`` = the output folder,
    ``class`` = what it was saved as), ``options`` the :class:`TrainConfig`.
    """

    envelope: Envelope
    losses: list[float]  # training loss of every step
    eval_loss: float  # held-out loss after training
    eval_ppl: float | None  # exp(eval_loss); None when it overflows
    seconds: float  # wall time of the training steps
    cpu_seconds: float | None
    steps: int
    tokens_per_s: float
    saved_as: str  # the transformers class of the saved model ("" on ranks > 0)
    KIND: ClassVar[str] = "depthlens.train"

    @property
    def out(self) -> str:
        """The folder the model and ``train.json`` were written to."""
        return str(self.model.get("ref", ""))


@dataclass(frozen=True)
class StudyResult(Enveloped):
    """Every (scheme, depth) run of a depth study and what was measured on it."""

    envelope: Envelope
    runs: list[dict[str, Any]]  # one row per run: scheme, depth, losses, unused depth, …
    schemes: dict[str, Any]  # {scheme: its record}
    seconds: float
    # mean ± 95% interval per (scheme, depth) over seeds, and the scheme pairs compared;
    # empty in study.json files written before --seeds
    summary: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    KIND: ClassVar[str] = "depthlens.study"
