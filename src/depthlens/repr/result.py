"""The typed results of ``depthlens repr`` and ``depthlens similarity``, and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from depthlens.results import Envelope, Enveloped


def repr_envelope(
    kind: str, model: dict[str, Any], data: dict[str, Any], options: dict[str, Any], tokens: Any
) -> Envelope:
    """The header of a ``repr`` / ``similarity`` result."""
    return Envelope(
        kind=f"depthlens.{kind}", model=model, data=data, options=options, tokens=tokens
    )


@dataclass(frozen=True)
class ReprResult(Enveloped):
    """Representation metrics of one model, per layer (``depthlens repr``)."""

    envelope: Envelope
    layers: list[str]  # the layer names, in depth order
    model_kind: str  # causal | encoder | vision
    mode: str  # tokens | labelled
    metrics: dict[str, Any]  # {repr metric: per layer (or a matrix: cka)}
    samples: dict[str, Any]  # how the tokens / examples were drawn
    definitions: dict[str, Any]  # the repr records, as written beside the values
    summary: dict[str, Any] = field(default_factory=dict)  # labelled mode: best layers
    KIND: ClassVar[str] = "depthlens.repr"

    @property
    def kind(self) -> str:
        """``repr`` (what the CLI and the page call it)."""
        return "repr"


@dataclass(frozen=True)
class SimilarityResult(Enveloped):
    """CKA between every layer of model A and every layer of model B (``depthlens similarity``)."""

    envelope: Envelope
    layers_a: list[str]
    layers_b: list[str]
    model_b: dict[str, Any]  # identity of model B (model A is the envelope's)
    metrics: dict[str, Any]  # {the CKA record's name: [layer of A][layer of B]}
    samples: dict[str, Any]
    definitions: dict[str, Any]
    KIND: ClassVar[str] = "depthlens.similarity"

    @property
    def kind(self) -> str:
        """``similarity``."""
        return "similarity"
