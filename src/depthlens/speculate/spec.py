"""What a draft is: the ``--draft`` spec, parsed and checked before any model loads.

Each kind of draft is one record in :data:`depthlens.speculate.kinds.DRAFT_KINDS`; this
module holds the parts that need no model: :class:`DraftSpec` and each kind's parser and
depth check (docs/SPECULATIVE.md lists the kinds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.spans import parse_blocks

EXAMPLES = "skip:12-19,23, plan:PLAN.json, exit:15, exit:15:tuned:DIR or cut:DIR"


@dataclass(frozen=True)
class DraftSpec:
    """A parsed ``--draft``: its kind and what it names."""

    kind: str  # a record of depthlens.speculate.kinds.DRAFT_KINDS
    text: str  # the spec as given (recorded in results)
    skip: tuple[int, ...] = ()  # "skip": original block indices, ascending
    exit_at: int | None = None  # "exit": blocks run before the lens reads
    path: str | None = None  # "plan" JSON, "cut" directory, or the tuned lens of "exit"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "kind": self.kind,
            "spec": self.text,
            "skip": list(self.skip),
            "exit_at": self.exit_at,
            "path": self.path,
        }


def bad_draft(text: str, why: str) -> DepthlensError:
    """The one-line error of a malformed ``--draft``, with examples of good ones."""
    return DepthlensError(f"bad --draft {text!r}: {why}; use {EXAMPLES}")


def parse_skip(text: str, body: str) -> DraftSpec:
    """``skip:12-19,23``: the blocks the draft leaves out."""
    try:
        blocks = parse_blocks(body, strict=True)
    except ValueError as e:
        raise bad_draft(text, str(e)) from None
    # ascending, each block once: the draft is a set of blocks to leave out
    return DraftSpec("skip", text, skip=tuple(sorted(set(blocks))))


def parse_exit(text: str, body: str) -> DraftSpec:
    """``exit:E`` or ``exit:E:tuned:DIR``: the depth, and the tuned lens when one is named."""
    e, _, rest = body.partition(":")
    try:
        exit_at = int(e)
    except ValueError:
        raise bad_draft(text, f"the exit depth {e!r} is not an integer") from None
    lens = None
    if rest:
        how, _, lens = rest.partition(":")
        if how != "tuned" or not lens:
            raise bad_draft(text, "after exit:E only ':tuned:DIR' may follow")
    return DraftSpec("exit", text, exit_at=exit_at, path=lens)


def parse_plan(text: str, body: str) -> DraftSpec:
    """``plan:PLAN.json``: a saved cut plan (the file must exist)."""
    p = Path(body).expanduser()
    if not p.is_file():
        raise DepthlensError(f"--draft {text!r}: plan file not found: {p}")
    return DraftSpec("plan", text, path=str(p))


def parse_cut(text: str, body: str) -> DraftSpec:
    """``cut:DIR``: a checkpoint written by ``depthlens prune`` (its manifest must exist)."""
    from depthlens.models.manifest import read_manifest

    p = Path(body).expanduser()
    if not p.is_dir():
        raise DepthlensError(f"--draft {text!r}: cut checkpoint directory not found: {p}")
    if read_manifest(p) is None:
        raise DepthlensError(
            f"--draft {text!r}: {p} has no depthlens.json; pass a checkpoint written by "
            "`depthlens prune`"
        )
    return DraftSpec("cut", text, path=str(p))


def check_exit_depth(spec: DraftSpec, num_layers: int) -> None:
    """Refuse an exit depth outside 1..L-1."""
    e = spec.exit_at
    if e is None or not 1 <= e <= num_layers - 1:
        raise DepthlensError(
            f"--draft {spec.text!r}: exit depth {e} is outside 1..{num_layers - 1} for "
            f"this {num_layers}-block model; pick E in that range"
        )


def check_skip_depth(spec: DraftSpec, num_layers: int) -> None:
    """Refuse blocks the model lacks, or a skip set that leaves no block."""
    outside = [i for i in spec.skip if i >= num_layers]
    if outside:
        raise DepthlensError(
            f"--draft {spec.text!r}: blocks {outside} do not exist in this "
            f"{num_layers}-block model (0..{num_layers - 1})"
        )
    if len(spec.skip) >= num_layers:
        raise DepthlensError(
            f"--draft {spec.text!r} skips every one of the {num_layers} blocks; keep at least one"
        )


def any_depth(spec: DraftSpec, num_layers: int) -> None:
    """A draft whose blocks fit every model (a plan or a cut is checked when it is built)."""


def check_k(k: int) -> None:
    """Refuse a draft length below 1."""
    if k < 1:
        raise DepthlensError(f"-k (draft length) must be at least 1, got {k}")
