"""Exact speculative decoding with the model's own depth as the draft (docs/SPECULATIVE.md)."""

from depthlens.speculate.api import run_speculative, speculate
from depthlens.speculate.kinds import DRAFT_KINDS, DraftKind, parse_draft
from depthlens.speculate.result import SpeculativeResult
from depthlens.speculate.spec import DraftSpec

__all__ = [
    "DRAFT_KINDS",
    "DraftKind",
    "DraftSpec",
    "SpeculativeResult",
    "parse_draft",
    "run_speculative",
    "speculate",
]
