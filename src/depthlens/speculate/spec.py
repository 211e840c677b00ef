"""What a draft is: the ``--draft`` spec, parsed and checked before any model loads.

Four kinds (docs/SPECULATIVE.md):

- ``skip:12-19,23``: the model itself with those blocks skipped (self-speculation);
- ``plan:PLAN.json``: a saved cut plan's blocks skipped and its linear maps applied;
- ``exit:E`` / ``exit:E:tuned:DIR``: the first E blocks read through the logit or tuned lens;
- ``cut:DIR``: a depthlens cut checkpoint of the same model, a separate model with its own cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError

DRAFT_KINDS = ("skip", "plan", "exit", "cut")
EXAMPLES = "skip:12-19,23, plan:PLAN.json, exit:15, exit:15:tuned:DIR or cut:DIR"


@dataclass(frozen=True)
class DraftSpec:
    """A parsed ``--draft``: its kind and what it names."""

    kind: str  # one of DRAFT_KINDS
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


def _bad(text: str, why: str) -> DepthlensError:
    return DepthlensError(f"bad --draft {text!r}: {why}; use {EXAMPLES}")


def parse_blocks(text: str, body: str) -> tuple[int, ...]:
    """``12-19,23`` -> (12, …, 19, 23): ascending, each block once."""
    out: set[int] = set()
    for part in body.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise _bad(text, f"{part.strip()!r} is not a block index or range a-b") from None
        if a < 0 or b < a:
            raise _bad(text, f"range {part.strip()!r} is empty or negative")
        out.update(range(a, b + 1))
    return tuple(sorted(out))


def parse_draft(text: str) -> DraftSpec:
    """Parse a ``--draft`` spec (no model needed); a one-line error names what is wrong."""
    kind, sep, body = text.partition(":")
    if kind not in DRAFT_KINDS or not sep or not body:
        raise _bad(text, f"the kind must be one of {', '.join(DRAFT_KINDS)} followed by ':'")
    if kind == "skip":
        return DraftSpec(kind, text, skip=parse_blocks(text, body))
    if kind == "exit":
        e, _, rest = body.partition(":")
        try:
            exit_at = int(e)
        except ValueError:
            raise _bad(text, f"the exit depth {e!r} is not an integer") from None
        lens = None
        if rest:
            how, _, lens = rest.partition(":")
            if how != "tuned" or not lens:
                raise _bad(text, "after exit:E only ':tuned:DIR' may follow")
        return DraftSpec(kind, text, exit_at=exit_at, path=lens)
    p = Path(body).expanduser()
    if kind == "plan" and not p.is_file():
        raise DepthlensError(f"--draft {text!r}: plan file not found: {p}")
    if kind == "cut" and not p.is_dir():
        raise DepthlensError(f"--draft {text!r}: cut checkpoint directory not found: {p}")
    return DraftSpec(kind, text, path=str(p))


def check_depth(spec: DraftSpec, num_layers: int) -> None:
    """Refuse an exit depth outside 1..L-1 or a skip set that leaves no block (needs L)."""
    if spec.kind == "exit":
        e = spec.exit_at
        if e is None or not 1 <= e <= num_layers - 1:
            raise DepthlensError(
                f"--draft {spec.text!r}: exit depth {e} is outside 1..{num_layers - 1} for "
                f"this {num_layers}-block model; pick E in that range"
            )
    if spec.kind == "skip":
        outside = [i for i in spec.skip if i >= num_layers]
        if outside:
            raise DepthlensError(
                f"--draft {spec.text!r}: blocks {outside} do not exist in this "
                f"{num_layers}-block model (0..{num_layers - 1})"
            )
        if len(spec.skip) >= num_layers:
            raise DepthlensError(
                f"--draft {spec.text!r} skips every one of the {num_layers} blocks; keep at "
                "least one"
            )


def check_k(k: int) -> None:
    """Refuse a draft length below 1."""
    if k < 1:
        raise DepthlensError(f"-k (draft length) must be at least 1, got {k}")
