"""Exact speculative decoding with the model's own depth as the draft (docs/SPECULATIVE.md)."""

from depthlens.speculate.api import run_speculative, speculate
from depthlens.speculate.result import SpeculativeResult
from depthlens.speculate.spec import DraftSpec, parse_draft

__all__ = ["DraftSpec", "SpeculativeResult", "parse_draft", "run_speculative", "speculate"]
