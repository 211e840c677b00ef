"""The parts of the report that the metric registry drives.

A metric that is recorded in a profile but has no hand-made figure still gets a plot
(its record's label and caption), and every metric shown is defined at the end of the
page from its record, with its paper: adding a metric is one record, and the report
shows it without further code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from depthlens.metrics.registry import MetricRecord, all_metrics
from depthlens.report import plots
from depthlens.report.page import Plot, esc

#: Metrics drawn by a dedicated figure in :mod:`depthlens.report.build`.
DEDICATED = frozenset(
    {
        "rel_contrib_attn",
        "rel_contrib_mlp",
        "rel_contrib_block",
        "cos_attn",
        "cos_mlp",
        "cos_block",
        "lens_kl",
        "lens_kl_rev",
        "lens_jsd",
        "lens_top1_agree",
        "lens_top5_overlap",
        "resid_norm",
        "resid_rms_growth",
        "block_influence",
        "angular_distance",
        "prediction_depth",
        "skip_out_kl",
        "skip_future",
    }
)


def generic_plots(metrics: dict[str, list[float | None]]) -> list[Callable[[], Plot]]:
    """A line plot for every per-block/per-layer metric of ``metrics`` without its own figure."""
    out: list[Callable[[], Plot]] = []
    for rec in all_metrics():
        vals = metrics.get(rec.name)
        if rec.name in DEDICATED or rec.shape not in ("block", "layer") or not vals:
            continue
        if not any(v is not None for v in vals):
            continue
        out.append(_line(rec, vals))
    return out


def _line(rec: MetricRecord, vals: list[float | None]) -> Callable[[], Plot]:
    axis = f"{rec.short} ({rec.unit})" if rec.unit else rec.short
    return lambda: Plot(
        rec.name.replace("_", "-"),
        f"{rec.short}: {rec.definition}",
        plots.lines_plot([(rec.short, vals)], axis),
        rec.caption,
    )


def definitions_html(names: Iterable[str]) -> str:
    """A table defining each named metric from its record (name, definition, source)."""
    want = set(names)
    rows = [r for r in all_metrics() if r.name in want]
    if not rows:
        return ""
    body = "".join(
        f"<tr><td><code>{esc(r.name)}</code></td><td>{esc(r.definition)}</td>"
        f"<td>{esc('; '.join(p.cite() for p in r.papers))}</td>"
        f"<td>{esc(r.deviation)}</td></tr>"
        for r in rows
    )
    return (
        '<h2>Definitions</h2><table class="meta defs"><tr><th>metric</th><th>definition</th>'
        f"<th>source</th><th>depthlens deviates</th></tr>{body}</table>"
    )
