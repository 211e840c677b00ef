"""Compact terminal tables of the headline numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from depthlens.profiling.result import Profile
from depthlens.spans import span_text


def _columns() -> list[tuple[str, str]]:
    """(metric, label) of every per-block / per-layer record marked for the table."""
    from depthlens.metrics.registry import all_metrics

    return [(r.name, r.short) for r in all_metrics() if r.table and r.shape in ("block", "layer")]


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


def profile_table(p: Profile) -> str:
    """Per-block table plus a few summary lines."""
    cols = [(k, h) for k, h in _columns() if k in p.metrics]
    rows = [[l] + [p.metrics[k][l] for k, _ in cols] for l in range(p.n_layers)]
    text = render_table(["block", *(h for _, h in cols)], rows)
    m = p.model
    lines = [
        f"{m['ref']} ({m['class']}, {m['num_layers']} blocks, {m['n_params'] / 1e6:.1f} M params)"
        f" on {p.data.get('source', {}).get('name', '?')}: {p.tokens['residual']} tokens"
        + (f", lens on {p.tokens['lens']}" if p.tokens.get("lens") else ""),
        text,
    ]
    if p.prediction_depth.get("mean") is not None:
        lines.append(f"mean prediction depth: {p.prediction_depth['mean']:.2f} blocks")
    if p.summary.get("loss") is not None:
        lines.append(f"loss on these tokens: {p.summary['loss']:.3f} nats")
    best = cheapest_span(p)
    if best:
        lines.append(
            f"cheapest span of {best[1]} blocks to cut: {span_text(best[0], best[1])} "
            f"(angular distance {best[2]:.3f})"
        )
    return "\n".join(lines)


def cheapest_span(p: Profile, n: int | None = None) -> tuple[int, int, float] | None:
    """(start, length, distance) of the span with the smallest angular distance, s ≥ 1."""
    n = n or max(1, p.n_layers // 8)
    best: tuple[int, int, float] | None = None
    for s in range(1, p.n_layers):
        row = p.angular_distance[s]
        d = row[n - 1] if n - 1 < len(row) else None
        if d is not None and (best is None or d < best[2]):
            best = (s, n, d)
    return best
