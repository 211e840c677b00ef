"""The result of one speculative generation, in the project's envelope.

The JSON names the generated ids ``tokens`` (what users of ``generate`` look for); the
envelope's own ``tokens`` (the token counts every result carries) moves to ``token_counts``
in this one result, and back on reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from depthlens.io import atomic_write_json
from depthlens.results import ENVELOPE_KEYS, Envelope, Enveloped, clean_json, read_json

SPECULATIVE_KIND = "depthlens.speculative"


@dataclass(frozen=True)
class SpeculativeResult(Enveloped):
    """Generated ids, how many drafts the full model kept, and where the time went."""

    envelope: Envelope
    generated: list[int]  # the generated ids: "tokens" in the JSON
    draft: dict[str, Any]  # the parsed --draft (kind, blocks, depth, path)
    k: int
    temperature: float
    acceptance: float  # kept / proposed draft tokens
    mean_accepted_length: float  # tokens per verification forward
    timing: dict[str, Any]  # seconds: total, prefill, draft, verify; tokens per second
    text: str | None = None
    fallback: str | None = None  # why plain decoding ran instead, when it did
    stats: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = SPECULATIVE_KIND

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: the envelope (its counts as ``token_counts``), ids as ``tokens``."""
        env = self.envelope.to_dict()
        env["token_counts"] = env.pop("tokens")
        payload = self.payload()
        payload["tokens"] = payload.pop("generated")
        return dict(clean_json({**env, **payload}))

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeculativeResult:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        ids = d.pop("tokens", [])
        d["tokens"] = d.pop("token_counts", {})
        env = Envelope.from_dict(d, cls.KIND)
        payload = {k: v for k, v in d.items() if k not in ENVELOPE_KEYS}
        payload["generated"] = ids
        return cls._from_parts(env, payload)

    @classmethod
    def load(cls, path: str | Path) -> SpeculativeResult:
        """Read a JSON written by :meth:`save`."""
        return cls.from_dict(read_json(path))
