"""The parts of the report that the metric registry drives.

A metric that is recorded in a profile but has no hand-made figure still gets a plot
(its record's label and caption), and every metric shown is defined at the end of the
page from its record, with its paper: adding a metric is one record, and the report
shows it without further code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from depthlens.metrics.catalog import causal as C
from depthlens.metrics.catalog import lens as LN
from depthlens.metrics.catalog import residual as R
from depthlens.metrics.registry import MetricRecord, all_metrics
from depthlens.report import plots
from depthlens.report.page import Plot, esc

#: The records each dedicated figure of :mod:`depthlens.report.build` draws, by figure id.
#: Every other per-block / per-layer record in a profile gets a line plot from its record.
FIGURE_RECORDS: dict[str, tuple[MetricRecord, ...]] = {
    "rel-contrib": (R.REL_CONTRIB_ATTN, R.REL_CONTRIB_MLP, R.REL_CONTRIB_BLOCK),
    "cosine": (R.COS_ATTN, R.COS_MLP, R.COS_BLOCK),
    "lens": (LN.LENS_KL, LN.LENS_KL_REV, LN.LENS_JSD, LN.LENS_TOP1, LN.LENS_TOP5),
    "prediction-depth": (LN.PREDICTION_DEPTH,),
    "resid-norm": (R.RESID_NORM, R.RESID_RMS_GROWTH),
    "angular": (R.ANGULAR_DISTANCE,),
    "block-influence": (R.BLOCK_INFLUENCE,),
    "skip-out-kl": (C.SKIP_OUT_KL,),
    "skip-future": (C.SKIP_FUTURE,),
}

#: Names of the metrics drawn by a dedicated figure.
DEDICATED = frozenset(r.name for recs in FIGURE_RECORDS.values() for r in recs)


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
