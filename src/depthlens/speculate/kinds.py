"""Draft kinds as records: one :class:`DraftKind` per ``--draft`` kind, in :data:`DRAFT_KINDS`.

Parsing, the depth check, building the drafter, the CLI's ``--draft`` help, the
did-you-mean of an unknown kind and the table of docs/SPECULATIVE.md all read this
registry, so a new kind of draft is one record: its parser (no model needed), its check
against the model's block count, and either the view of the verified model it drafts with
(a self-draft on the model's own cache) or none (a separate model the caller loads).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from depthlens.models.loading import LoadedModel
from depthlens.registry import Registry
from depthlens.speculate.build import exit_view, plan_view, skip_view
from depthlens.speculate.spec import (
    DraftSpec,
    any_depth,
    bad_draft,
    check_exit_depth,
    check_skip_depth,
    parse_cut,
    parse_exit,
    parse_plan,
    parse_skip,
)
from depthlens.speculate.view import DepthView

OWN_CACHE = "the verified model's own cache"


@dataclass(frozen=True)
class DraftKind:
    """One kind of draft: its syntax, what drafts, and how it is parsed, checked and built."""

    name: str  # the prefix before ':'
    usage: str  # the syntax, as ``--draft`` help and the docs show it
    drafts: str  # what proposes the tokens (docs)
    parse: Callable[[str, str], DraftSpec]  # (the whole spec, the text after "name:")
    # the blocks the draft runs on the verified model; None: a separate model (cut)
    view: Callable[[LoadedModel, DraftSpec], DepthView] | None = None
    check: Callable[[DraftSpec, int], None] = any_depth  # (spec, the model's block count)
    cache: str = OWN_CACHE  # which KV cache the draft writes (docs)

    @property
    def separate_model(self) -> bool:
        """True when the draft is another model, loaded by the caller (``draft_lm``)."""
        return self.view is None


DRAFT_KINDS: Registry[DraftKind] = Registry(
    "draft kind",
    columns=(
        ("`--draft`", lambda k: f"`{k.usage}`"),
        ("what drafts", lambda k: k.drafts),
        ("cache", lambda k: k.cache),
    ),
)

DRAFT_KINDS.register(
    DraftKind(
        "skip",
        "skip:12-19,23",
        "the same weights with those blocks not run (self-speculation)",
        parse_skip,
        view=skip_view,
        check=check_skip_depth,
    )
)
DRAFT_KINDS.register(
    DraftKind(
        "plan",
        "plan:PLAN.json",
        "a saved cut plan's blocks not run, its linear maps applied to the MLP outputs by "
        "draft-only hooks",
        parse_plan,
        view=plan_view,
    )
)
DRAFT_KINDS.register(
    DraftKind(
        "exit",
        "exit:E[:tuned:DIR]",
        "the first E blocks, read by the final norm + head (logit lens) or the tuned lens",
        parse_exit,
        view=exit_view,
        check=check_exit_depth,
    )
)
DRAFT_KINDS.register(
    DraftKind(
        "cut",
        "cut:DIR",
        "a depthlens cut checkpoint of the same model (its `depthlens.json` names the base; "
        "refused when the fingerprint differs)",
        parse_cut,
        cache="its own cache",
    )
)


def parse_draft(text: str) -> DraftSpec:
    """Parse a ``--draft`` spec (no model needed); a one-line error names what is wrong."""
    name, sep, body = text.partition(":")
    if name not in DRAFT_KINDS or not sep or not body:
        names = DRAFT_KINDS.names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}:{body}'? " if name not in DRAFT_KINDS and close else ""
        raise bad_draft(text, f"{hint}the kind must be one of {', '.join(names)} followed by ':'")
    return DRAFT_KINDS[name].parse(text, body)


def draft_kind(spec: DraftSpec) -> DraftKind:
    """The record of ``spec``'s kind."""
    return DRAFT_KINDS[spec.kind]


def draft_usage() -> str:
    """``skip:12-19,23 | plan:PLAN.json | …``: every kind's syntax (the ``--draft`` help)."""
    return " | ".join(k.usage for k in DRAFT_KINDS.values())
