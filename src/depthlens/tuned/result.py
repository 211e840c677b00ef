"""The typed ``lens.json`` of a trained tuned lens: what ``depthlens lens train`` writes.

The folder holds ``translators.safetensors`` (the weights) and ``lens.json``: the envelope
(which model, which data, every training option) and two payload parts, the lens's shape
(``lens``) and the training record (``training``), with the held-out KL curve per
translator against training tokens when held-out windows were given. Every reader of
``lens.json`` goes through :class:`TunedLensResult`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from depthlens.errors import DepthlensError
from depthlens.results import Envelope, Enveloped, clean_json

LENS_KIND = "depthlens.tuned_lens"
META = "lens.json"

READS = "translator l reads h_l, the stream entering block l; h_L is read without one"
FORM = "softmax(U · final_norm(h + A_l h + b_l))"
LOSS = "KL(p_L ‖ p_l) in nats, mean over tokens, per translator l = 0..L-1"
HELDOUT_WHAT = (
    "mean KL(p_L ‖ p_l) per translator on held-out tokens, after the initialisation "
    "(tokens = 0) and every eval_every steps (training tokens seen)"
)


@dataclass(frozen=True)
class LensShape:
    """How many translators, of which width, and what they compute."""

    n_layers: int
    d_model: int
    reads: str = READS
    form: str = FORM


@dataclass(frozen=True)
class HeldoutKL:
    """Mean KL per translator on held-out tokens against the training tokens seen."""

    tokens: list[int]  # training tokens seen at each point; the first is 0 (the start)
    kl: list[list[float]]  # per point: one mean KL per translator l = 0..L-1, in nats
    data: dict[str, Any] = field(default_factory=dict)  # identity of the held-out windows
    n_tokens: int = 0  # held-out tokens each point is measured on
    what: str = HELDOUT_WHAT

    def mean_kl(self) -> list[float]:
        """The curve's mean over translators, one value per point."""
        return [sum(k) / len(k) if k else float("nan") for k in self.kl]


def _known(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` has, refusing a record that lacks a required one."""
    if not isinstance(d, dict):
        raise DepthlensError(f"tuned lens JSON: {what} is {type(d).__name__}, not an object")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class LensTraining:
    """The training record. Every field has a default: a lens saved by hand has no run."""

    steps: int = 0
    tokens_seen: int = 0
    unique_windows: int = 0
    seconds: float = 0.0
    init: dict[str, Any] | None = None  # {kind, tokens, seconds} of the initialisation
    loss_first_step: list[float] = field(default_factory=list)  # per translator
    loss_last_steps: list[float] = field(default_factory=list)  # mean of the last steps
    loss_last_steps_n: int = 0
    loss_curve_mean_over_layers: list[float] = field(default_factory=list)  # per step
    loss: str = LOSS
    heldout_kl: HeldoutKL | None = None  # only with held-out windows (--eval-tokens)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form; absent optional parts stay absent (as lens.json always had it)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LensTraining:
        """Inverse of :meth:`to_dict`; also reads records written before a field existed."""
        kw = _known(cls, d, "training")
        if kw.get("heldout_kl") is not None:
            curve = _known(HeldoutKL, kw["heldout_kl"], "training.heldout_kl")
            if "tokens" not in curve or "kl" not in curve:
                raise DepthlensError("tuned lens JSON: training.heldout_kl lacks tokens or kl")
            kw["heldout_kl"] = HeldoutKL(**curve)
        return cls(**kw)


@dataclass(frozen=True)
class TunedLensResult(Enveloped):
    """``lens.json``: the envelope (model, data, options, training tokens) and the payload."""

    envelope: Envelope
    lens: LensShape
    training: LensTraining = field(default_factory=LensTraining)
    KIND: ClassVar[str] = LENS_KIND

    @property
    def n_layers(self) -> int:
        """Number of translators (the model's block count)."""
        return self.lens.n_layers

    @property
    def d_model(self) -> int:
        """Width of the residual stream the translators map."""
        return self.lens.d_model

    def payload(self) -> dict[str, Any]:
        """The two payload parts as plain JSON values."""
        return {"lens": asdict(self.lens), "training": self.training.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: envelope and payload side by side."""
        return dict(clean_json({**self.envelope.to_dict(), **self.payload()}))

    @classmethod
    def _from_parts(cls, env: Envelope, payload: dict[str, Any]) -> TunedLensResult:
        lens = payload.get("lens")
        if not isinstance(lens, dict) or "n_layers" not in lens or "d_model" not in lens:
            raise DepthlensError("tuned lens JSON lacks lens.n_layers / lens.d_model")
        shape = LensShape(**_known(LensShape, lens, "lens"))
        training = LensTraining.from_dict(payload.get("training") or {})
        return cls(envelope=env, lens=shape, training=training)
