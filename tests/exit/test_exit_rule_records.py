"""Exit rules are registry records: a new kind is one record, and every reader picks it up."""

from __future__ import annotations

import argparse

import pytest
import torch

from depthlens.errors import DepthlensError
from depthlens.exit.rules import EXIT_RULES, ExitRule, RuleKind, exit_depth, fires_now


def _margin_rule() -> RuleKind:
    """Fires when the top-1 probability is at least τ times the entropy (a test rule)."""

    def check(t: float, n_layers: int | None, vocab: int | None) -> None:
        if t <= 0:
            raise DepthlensError(f"--margin {t} must be positive")

    return RuleKind(
        name="margin",
        symbol="τ",
        help="test rule",
        fires_when="conf ≥ τ·H",
        threshold_range="(0, ∞)",
        metavar="T,T",
        default_sweep=(1.0, 2.0),
        validate=check,
        fires_all=lambda t, conf, ent, top1: conf >= t * ent,
        fires_one=lambda t, conf, ent, history: conf >= t * ent,
        label=lambda t: f"margin τ={t:g}",
    )


def test_unknown_rule_kind_did_you_mean() -> None:
    with pytest.raises(DepthlensError, match="did you mean 'confidence'"):
        ExitRule("confidense", 0.5).check()


def test_a_registered_rule_is_checked_tested_labelled_and_offered_as_a_flag() -> None:
    with EXIT_RULES.scoped():
        EXIT_RULES.register(_margin_rule())
        rule = ExitRule("margin", 2.0, min_depth=2)
        rule.check(n_layers=3, vocab=10)
        with pytest.raises(DepthlensError, match="must be positive"):
            ExitRule("margin", -1.0).check()
        assert rule.label() == "margin τ=2"
        conf = torch.tensor([[0.99, 0.99, 0.1], [0.1, 0.2, 0.3]])  # (N=2, L=3)
        ent = torch.tensor([[0.1, 0.1, 2.0], [2.0, 2.0, 2.0]])
        top1 = torch.zeros(2, 3, dtype=torch.long)
        # token 0 fires at depth 1 but may exit only from depth 2; token 1 never: depth L
        assert exit_depth(rule, conf, ent, top1).tolist() == [2, 3]
        assert not fires_now(rule, 1, 0.99, 0.1, [0]) and fires_now(rule, 2, 0.99, 0.1, [0, 0])

        from depthlens.cli.lens_cmd import _register_exit

        sub = argparse.ArgumentParser().add_subparsers()
        _register_exit(sub)
        assert "--margin T,T" in sub.choices["exit"].format_help()
    assert "margin" not in EXIT_RULES
