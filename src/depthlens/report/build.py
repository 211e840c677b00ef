"""Assemble the report: header, "what this means", one figure per analysis."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from depthlens._version import __version__
from depthlens.io import atomic_write_text, check_output_path
from depthlens.metrics.catalog import causal as C
from depthlens.metrics.catalog import lens as LN
from depthlens.metrics.catalog import residual as R
from depthlens.metrics.records import MetricRecord
from depthlens.profiling.result import Profile
from depthlens.progress import progress_bar
from depthlens.report import captions as cap
from depthlens.report import plots
from depthlens.report.inputs import (
    ReportInputs,
    check_profile,
    gather_inputs,
    load_files,
    num,
    sanitize,
)
from depthlens.report.page import Plot, esc, meta_table, page, plot_html, token_strip
from depthlens.report.records import FIGURE_RECORDS, definitions_html, generic_plots
from depthlens.spans import span_text


def _m(p: Profile, rec: MetricRecord) -> list[float | None] | None:
    v = p.metrics.get(rec.name)
    return v if v and any(x is not None for x in v) else None


def _series(p: Profile, figure: str) -> list[tuple[str, list[float | None]]]:
    """(legend, values) of each record ``figure`` draws; the legend is its definition."""
    out = []
    for rec in FIGURE_RECORDS[figure]:
        vals = _m(p, rec)
        if vals:
            out.append((rec.definition, vals))
    return out


def _update_plots(p: Profile) -> list[Callable[[], Plot]]:
    """Relative contribution and cosine of each update (Csordás et al.)."""
    out: list[Callable[[], Plot]] = []
    rc = _series(p, "rel-contrib")
    if rc:
        out.append(
            lambda: Plot(
                "rel-contrib",
                "Relative contribution per block",
                plots.lines_plot(rc, "‖update‖ / ‖stream‖ (%, log scale)", percent=True, log=True),
                cap.rel_contrib_caption(_m(p, R.REL_CONTRIB_BLOCK) or []),
            )
        )
    cs = _series(p, "cosine")
    if cs:
        out.append(
            lambda: Plot(
                "cosine",
                "Cosine of each update to the residual stream",
                plots.lines_plot(cs, "cosine (−1..1; < 0 erases)", hline=0.0),
                cap.cosine_caption(
                    _m(p, R.COS_BLOCK) or [], _m(p, R.COS_ATTN) or [], _m(p, R.COS_MLP) or []
                ),
            )
        )
    return out


def _lens_plots(p: Profile) -> list[Callable[[], Plot]]:
    """The lens against depth and the prediction-depth histogram."""
    out: list[Callable[[], Plot]] = []
    kl, top1 = _m(p, LN.LENS_KL), _m(p, LN.LENS_TOP1)
    if kl and top1:
        out.append(
            lambda: Plot(
                "lens",
                "Logit lens against depth",
                plots.lens_plot(
                    kl, _m(p, LN.LENS_KL_REV), _m(p, LN.LENS_JSD), top1, _m(p, LN.LENS_TOP5)
                ),
                cap.lens_caption(kl, top1),
            )
        )
    hist = p.prediction_depth.get("histogram") if isinstance(p.prediction_depth, dict) else None
    h = [int(num(x) or 0) for x in hist] if isinstance(hist, list) else []
    if sum(h) > 0:
        mean = p.prediction_depth.get("mean")
        out.append(
            lambda: Plot(
                "prediction-depth",
                "Prediction depth",
                plots.depth_plot(h, mean),
                cap.depth_caption(h, mean, p.n_layers),
            )
        )
    return out


def _stream_plots(p: Profile, inp: ReportInputs) -> list[Callable[[], Plot]]:
    """Residual norm growth, angular distance and block influence."""
    L = p.n_layers
    out: list[Callable[[], Plot]] = []
    norm = _m(p, R.RESID_NORM)
    if norm:
        growth = _m(p, R.RESID_RMS_GROWTH)
        out.append(
            lambda: Plot(
                "resid-norm",
                "Residual norm growth",
                plots.norm_plot(norm, growth),
                cap.norm_caption(norm, growth or []),
            )
        )
    if any(v is not None for row in p.angular_distance for v in row):
        span = p.cheapest_span()
        mark = plots.mark_of(inp.plan, span)
        label = "plan's span" if inp.plan else "cheapest span (n = L/8)"
        out.append(
            lambda: Plot(
                "angular",
                "Angular distance between h_l and h_l+n",
                plots.angular_plot(p.angular_distance, mark, label),
                cap.angular_caption(span, inp.plan, L),
            )
        )
    bi = _m(p, R.BLOCK_INFLUENCE)
    if bi:
        k = max(1, L // 8)
        low = sorted(range(L), key=lambda i: (bi[i] is None, bi[i] or 0.0))[:k]
        out.append(
            lambda: Plot(
                "block-influence",
                "Block influence (ShortGPT)",
                plots.bars_plot(bi, "block influence 1 − cos(h_l, h_l+1)", "block influence", low),
                cap.influence_caption(bi, k),
            )
        )
    return out


def _profile_plots(p: Profile, inp: ReportInputs) -> list[Callable[[], Plot]]:
    """Deferred builders for the profile's figures (drawn under a progress bar)."""
    return [*_update_plots(p), *_lens_plots(p), *_stream_plots(p, inp)]


def _extra_plots(inp: ReportInputs, L: int) -> list[Callable[[], Plot]]:
    """Cut and causal figures, each only when its data is present."""
    out: list[Callable[[], Plot]] = []
    rows = inp.cuts
    if any(r.n > 0 and r.ppl is not None for r in rows):
        out.append(
            lambda: Plot(
                "cut-ppl",
                "Perplexity after cutting",
                plots.ppl_plot(rows, cap.baseline_ppl(rows)),
                cap.ppl_caption(rows),
            )
        )
    if any(r.n > 0 and (r.prefill_speedup or r.decode_speedup) for r in rows):
        out.append(
            lambda: Plot(
                "cut-speed",
                "Measured speed-up after cutting",
                plots.speed_plot(rows),
                cap.speed_caption(rows),
            )
        )
    kl = inp.skip_out_kl
    if kl and any(v is not None for v in kl):
        out.append(
            lambda: Plot(
                "skip-out-kl",
                "Output change when one block is skipped",
                plots.bars_plot(kl, "KL(p_L ‖ p_L with block skipped) (nats)", "skip KL"),
                cap.skip_kl_caption(kl),
            )
        )
    fut = inp.skip_future
    if fut and any(v is not None for row in fut for v in row):
        out.append(
            lambda: Plot(
                "skip-future",
                "Effect of skipping a block on later blocks",
                plots.heatmap_plot(
                    fut, "later block j", "skipped block l", "‖Δ_j changed‖ / ‖Δ_j‖ (ratio)"
                ),
                cap.skip_future_caption(fut),
            )
        )
    return out


def _header(p: Profile, inp: ReportInputs, today: str) -> str:
    m = p.model if isinstance(p.model, dict) else {}
    src = p.data.get("source", {}) if isinstance(p.data, dict) else {}
    data_name = src.get("name", "?") if isinstance(src, dict) else src
    params = m.get("n_params")
    rows: list[tuple[str, Any]] = [
        ("model", m.get("ref", "?")),
        ("class", m.get("class", "?")),
        ("blocks", p.n_layers),
        ("parameters", f"{params / 1e6:.1f} M" if isinstance(params, int | float) else "?"),
        ("data", data_name),
        ("tokens", ", ".join(f"{k} {v}" for k, v in (p.tokens or {}).items())),
        ("depthlens", f"{__version__} (profile written by {p.envelope.version})"),
        ("profiled", p.created),
        ("report", today),
    ]
    if inp.sources:
        rows.append(("other results", ", ".join(inp.sources)))
    opts = meta_table(sorted((str(k), v) for k, v in (p.options or {}).items()), "meta opts")
    data_rows = [(str(k), v) for k, v in (p.data or {}).items() if k != "source"]
    data_rows += [(f"source.{k}", v) for k, v in (src.items() if isinstance(src, dict) else [])]
    return (
        f"<h1>How {esc(m.get('ref', '?'))} uses its depth</h1>"
        f'<p class="sub">depthlens report · {esc(today)}</p>{meta_table(rows)}'
        f"<details open><summary>every option</summary>{opts}</details>"
        f"<details><summary>data identity</summary>{meta_table(sorted(data_rows))}</details>"
    )


def meaning(p: Profile, inp: ReportInputs) -> list[str]:
    """The "what this means" bullets, computed from the numbers (plain text)."""
    out = []
    span = p.cheapest_span()
    if span:
        s, n, d = span
        out.append(
            f"The cheapest contiguous span of {n} block{'s' if n > 1 else ''} to cut is "
            f"{cap.blocks(s, s + n - 1)} (angular distance {d:.3f})."
        )
    want = inp.plan.n if inp.plan and inp.plan.n else (span[1] if span else None)
    best = cap.best_cut(inp.cuts, want)
    if best:
        out.append(
            f"Measured: removing {best.n} blocks with {best.method} gives "
            f"{cap.cut_cost(best, cap.baseline_ppl(inp.cuts))}."
        )
    top1 = _m(p, LN.LENS_TOP1)
    mean = p.prediction_depth.get("mean") if isinstance(p.prediction_depth, dict) else None
    if mean is not None:
        a = cap.first_from(top1 or [], 0.5, above=True)
        where = (
            f"; the lens matches the output on most tokens from block {a}" if a is not None else ""
        )
        out.append(f"Predictions settle after {mean:.1f} of {p.n_layers} blocks on average{where}.")
    rc = _m(p, R.REL_CONTRIB_BLOCK)
    if rc:
        out.append(cap.rel_contrib_caption(rc))
    loss = p.summary.get("loss") if isinstance(p.summary, dict) else None
    if isinstance(loss, int | float):
        out.append(
            f"The model's own loss on these tokens is {loss:.3f} nats "
            f"(perplexity {2.718281828459045**loss:.2f})."
        )
    return out


def build_report(
    profile: Profile,
    results: Sequence[Any] = (),
    *,
    names: Sequence[str] | None = None,
    progress: bool = False,
    today: str | None = None,
) -> str:
    """The self-contained HTML report of ``profile`` plus parsed cut / causal results."""
    check_profile(profile, "profile")
    profile = sanitize(profile)
    inp = gather_inputs(profile, list(results), list(names) if names else None)
    today = today or _dt.date.today().isoformat()
    L = profile.n_layers
    builders = [
        *_profile_plots(profile, inp),
        *generic_plots(profile.metrics),
        *_extra_plots(inp, L),
    ]
    bar = progress_bar(len(builders), "drawing plots", enabled=progress)
    figs = []
    try:
        for b in builders:
            figs.append(b())
            bar.update()
    finally:
        bar.close()
    parts = [
        _header(profile, inp, today),
        "<h2>What this means</h2>",
        '<ul class="meaning">'
        + "".join(f"<li>{esc(s)}</li>" for s in meaning(profile, inp))
        + "</ul>",
    ]
    for f in figs:
        parts.append(f"<h2>{esc(f.title)}</h2>{plot_html(f)}")
    if inp.think_tokens:
        settle = [t.get(C.SETTLING_LAYER.name) for t in inp.think_tokens]
        deep = [bool(t.get("deep")) for t in inp.think_tokens]
        parts.append(
            "<h2>Where each token settles</h2>"
            + token_strip(
                inp.think_tokens,
                L,
                cap.think_caption(
                    [int(s) if isinstance(s, int | float) else None for s in settle], deep, L
                ),
            )
        )
    shown = [*profile.metrics, R.ANGULAR_DISTANCE.name, LN.PREDICTION_DEPTH.name]
    if inp.skip_out_kl:
        shown += [C.SKIP_OUT_KL.name, C.SKIP_FUTURE.name]
    if inp.think_tokens:
        shown += [C.REASONING_SCORE.name, C.SETTLING_LAYER.name]
    parts.append(definitions_html(shown))
    parts.append(
        f"<footer>depthlens {esc(__version__)} · definitions above and in the project's "
        f"docs/SPEC.md · {len(figs)} plots</footer>"
    )
    return page(f"depthlens report: {profile.model.get('ref', '?')}", "".join(parts))


def headline_rows(profile: Profile, results: Sequence[Any] = ()) -> list[list[Any]]:
    """[what, value] rows for the terminal."""
    profile = sanitize(profile)
    inp = gather_inputs(profile, list(results))
    rows: list[list[Any]] = [
        ["model", profile.model.get("ref", "?")],
        ["blocks", profile.n_layers],
        ["tokens", (profile.tokens or {}).get("residual", "?")],
    ]
    mean = (
        profile.prediction_depth.get("mean") if isinstance(profile.prediction_depth, dict) else None
    )
    if mean is not None:
        rows.append(["mean prediction depth", f"{float(mean):.2f} blocks"])
    span = profile.cheapest_span()
    if span:
        rows.append(
            [
                f"cheapest {span[1]}-block span",
                f"{span_text(span[0], span[1])} (angular {span[2]:.3f})",
            ]
        )
    best = cap.best_cut(inp.cuts)
    if best:
        rows.append(
            [
                f"best cut of {best.n}",
                f"{best.method}: ppl {best.ppl:.2f}"
                + (f", prefill {cap.speed_text(best, 'prefill')}" if best.prefill_speedup else ""),
            ]
        )
    return rows


def write_report(
    paths: Sequence[str | Path], out: str | Path, overwrite: bool = False, *, progress: bool = False
) -> tuple[Path, list[list[Any]]]:
    """Read the profile + results, write the HTML atomically; returns (path, headline rows)."""
    from depthlens.report.matching import check_not_input

    check_not_input(out, paths)  # before check_output_path: --overwrite must not allow it
    target = check_output_path(out, overwrite)
    profile, results, names = load_files(list(paths))
    text = build_report(profile, results, names=[Path(n).name for n in names], progress=progress)
    atomic_write_text(target, text)
    return target, headline_rows(profile, results)
