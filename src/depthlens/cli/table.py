"""Compact terminal tables of the headline numbers."""

from __future__ import annotations

from depthlens.profiling.result import Profile
from depthlens.report.text import fmt, render_table
from depthlens.spans import span_text

__all__ = ["fmt", "profile_table", "render_table"]


def _columns() -> list[tuple[str, str]]:
    """(metric, label) of every per-block / per-layer record marked for the table."""
    from depthlens.metrics.registry import all_metrics

    return [(r.name, r.short) for r in all_metrics() if r.table and r.shape in ("block", "layer")]


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
    best = p.cheapest_span()
    if best:
        lines.append(
            f"cheapest span of {best[1]} blocks to cut: {span_text(best[0], best[1])} "
            f"(angular distance {best[2]:.3f})"
        )
    return "\n".join(lines)
