"""Plain-text tables: fixed-width numbers, right-aligned columns (terminal and text reports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(v: Any, width: int = 9) -> str:
    """A number in a fixed width; '-' for missing."""
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        a = abs(v)
        s = f"{v:.3g}" if (a and (a < 1e-2 or a >= 1e4)) else f"{v:.3f}"
        return s.rjust(width)
    return str(v).rjust(width)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned plain-text table."""
    widths = [max(len(h), *(len(fmt(r[i]).strip()) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(fmt(v, w) for v, w in zip(r, widths)))
    return "\n".join(out)
