"""The study's HTML page: loss vs depth, RMS growth, ΔP(ℓ)/L heatmaps, unused depth.

Self-contained (PNG figures inline, no fetches) and escaped, built from ``study.json``
with the report package's page, figure and escaping helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlens.io import atomic_write_text
from depthlens.report.page import Plot, esc, meta_table, page, plot_html
from depthlens.report.plots import (
    heatmap_axes,
    nan_floats,
    new_figure,
    plain,
    plot_style,
    png_bytes,
)
from depthlens.train.result import StudyResult

N_BINS = 10  # relative-depth bins of the ΔP(ℓ)/L heatmaps


def by_scheme(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by scheme (in first-seen order), each group sorted by depth."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        out.setdefault(str(r["scheme"]), []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: int(r["depth"]))
    return out


def loss_plot(runs: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]] = ()) -> bytes:
    """Held-out loss against depth, one line per scheme: mean ± 95% interval over seeds."""
    groups = by_scheme(summary) if summary else by_scheme(runs)
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        for scheme, rs in groups.items():
            if summary:
                ivs = [r.get("eval_loss") or {} for r in rs]
                means = nan_floats([iv.get("mean") for iv in ivs])
                lo = [m - float(iv.get("lo", m)) for m, iv in zip(means, ivs, strict=True)]
                hi = [float(iv.get("hi", m)) - m for m, iv in zip(means, ivs, strict=True)]
                ax.errorbar(
                    [r["depth"] for r in rs],
                    means,
                    yerr=[lo, hi],
                    marker="o",
                    capsize=3,
                    label=plain(f"{scheme} (mean ± 95% CI, {rs[0].get('n_seeds')} seeds)"),
                )
                continue
            ax.plot(
                [r["depth"] for r in rs],
                nan_floats([r["eval_loss"] for r in rs]),
                marker="o",
                label=plain(scheme),
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth L (blocks)")
        ax.set_ylabel("held-out loss (nats/token)")
        ax.legend(fontsize=8)
        return png_bytes(fig)


def rms_plot(runs: Sequence[dict[str, Any]]) -> bytes:
    """Residual RMS against relative depth ℓ/L, deepest run per scheme."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        for scheme, rs in by_scheme(runs).items():
            r = rs[-1]
            vals = nan_floats(r.get("resid_rms") or [])
            n = max(1, len(vals) - 1)
            ax.plot(
                [i / n for i in range(len(vals))],
                vals,
                marker="o",
                ms=3,
                label=plain(f"{scheme} (L={r['depth']})"),
            )
        ax.set_yscale("log")
        ax.set_xlabel("relative depth ℓ/L (0 = embedding output)")
        ax.set_ylabel("residual RMS ‖h_ℓ‖/√d")
        ax.legend(fontsize=8)
        return png_bytes(fig)


def binned_costs(rel: Sequence[float | None], bins: int = N_BINS) -> list[float | None]:
    """Mean relative removal cost per relative-depth bin (block ℓ sits at (ℓ+½)/L)."""
    sums, counts = [0.0] * bins, [0] * bins
    n = len(rel)
    for ell, v in enumerate(rel):
        if v is None:
            continue
        b = min(bins - 1, int((ell + 0.5) / n * bins))
        sums[b] += v
        counts[b] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def seed_mean_rows(rs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per depth: the binned relative removal costs averaged over seeds."""
    import numpy as np

    by_depth: dict[int, list[list[float]]] = {}
    for r in rs:
        if r.get("removal_cost_rel"):
            binned = binned_costs(r["removal_cost_rel"])
            by_depth.setdefault(int(r["depth"]), []).append(
                [np.nan if v is None else 100 * v for v in binned]
            )
    return [
        {"depth": d, "binned": np.nanmean(np.array(v), axis=0)} for d, v in sorted(by_depth.items())
    ]


def heatmap(runs: Sequence[dict[str, Any]], scheme: str) -> bytes:
    """ΔP(ℓ)/loss (%) by relative depth (x) and depth L (y), for one scheme (seed mean)."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():  # a bin empty in every seed is NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        rs = seed_mean_rows(runs)
    arr = np.array([r["binned"] for r in rs]) if rs else np.full((1, N_BINS), np.nan)
    with plot_style():
        fig = new_figure(7.0, 1.2 + 0.45 * max(1, len(rs)))
        ax = heatmap_axes(
            fig,
            arr,
            "magma_r",
            "ΔP(ℓ) / loss (%)",
            extent=(0.0, 1.0, -0.5, max(1, len(rs)) - 0.5),
        )
        ax.set_yticks(range(len(rs)), [str(r["depth"]) for r in rs])
        ax.set_xlabel("relative depth of the deleted block ℓ/L")
        ax.set_ylabel("depth L")
        ax.set_title(plain(scheme), fontsize=9)
        return png_bytes(fig)


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per run: seed, loss, RMS growth, unused depth."""
    head = (
        "scheme",
        "L",
        "seed",
        "held-out loss",
        "train loss (last 10%)",
        "RMS last/first",
        "unused depth (ΔP < 1%)",
        "saved as",
    )
    rows = []
    for r in runs:
        rms = [v for v in (r.get("resid_rms") or []) if v is not None]
        growth = rms[-1] / rms[0] if len(rms) > 1 and rms[0] else None
        unused = r.get("unused_depth")
        cells = (
            r["scheme"],
            r["depth"],
            r.get("seed", "–"),
            _fmt(r.get("eval_loss")),
            _fmt(r.get("train_loss_last")),
            _fmt(growth, 2),
            "–" if unused is None else f"{100 * unused:.0f}%",
            r.get("saved_as"),
        )
        rows.append(cells)
    return _table(head, rows)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="meta"><tr>{th}</tr>{body}</table>'


def interval_table(study: StudyResult) -> str:
    """Mean ± 95% interval over seeds per (scheme, depth), then the called differences."""
    from depthlens.train.seeds import fmt_interval

    head = (
        "scheme",
        "L",
        "seeds",
        "held-out loss",
        "RMS h_L/h_1",
        "ΔP 1st half %",
        "ΔP 2nd half %",
        "unused depth %",
    )
    rows = [
        (
            e["scheme"],
            e["depth"],
            e["n_seeds"],
            fmt_interval(e["eval_loss"]),
            fmt_interval(e["rms_growth"], 2),
            fmt_interval(e["removal_first_half"], 2, 100),
            fmt_interval(e["removal_second_half"], 2, 100),
            fmt_interval(e["unused_depth"], 0, 100),
        )
        for e in study.summary
    ]
    diffs = [
        (
            f"{d['a']} vs {d['b']}",
            r["depth"],
            r["figure"],
            _fmt(r[d["a"]], 4),
            _fmt(r[d["b"]], 4),
            "yes" if r["significant"] else "no (intervals overlap)",
        )
        for d in study.differences
        for r in d["rows"]
    ]
    return (
        _table(head, rows)
        + "<h3>Differences (called only when the intervals separate)</h3>"
        + _table(("schemes", "L", "figure", "mean a", "mean b", "significant"), diffs)
    )


def build_study_page(study: StudyResult) -> str:
    """The whole HTML document for one study."""
    runs, env = study.runs, study.envelope
    opts = env.options
    base = opts.get("base", {})
    plots = [
        Plot(
            "loss",
            "Held-out loss vs depth",
            loss_plot(runs, study.summary),
            "Held-out loss of every (scheme, depth) trained on the same tokens and budget; "
            "mean over seeds with its 95% interval.",
        ),
        Plot(
            "rms",
            "Residual RMS per layer",
            rms_plot(runs),
            "RMS of the residual stream entering each block (the last point is the final "
            "stream), deepest model of each scheme: Pre-LN's growth is the Curse of Depth.",
        ),
    ]
    plots += [
        Plot(
            f"heat-{s}",
            f"Removal cost, {s}",
            heatmap(rs, s),
            f"{s}: loss increase when one block is deleted, as % of the loss, by the "
            "block's relative depth (binned) and the model's depth.",
        )
        for s, rs in by_scheme(runs).items()
    ]
    meta = meta_table(
        [
            ("depths", ", ".join(map(str, opts.get("depths", [])))),
            ("schemes", ", ".join(opts.get("schemes", []))),
            (
                "width / heads / context",
                f"{base.get('width')} / {base.get('heads')} / {base.get('context')}",
            ),
            ("training tokens per run", env.tokens.get("trained_per_run")),
            ("data / held-out", f"{base.get('data')} / {base.get('eval_data')}"),
            ("seeds", ", ".join(map(str, opts.get("seeds", [base.get("seed")])))),
            ("wall time (s)", _fmt(study.seconds, 0)),
            ("depthlens", env.version),
            ("created", env.created),
        ]
    )
    body = (
        f'<h1>depthlens depth study</h1><p class="sub">{esc(len(runs))} runs</p>{meta}'
        f"<h2>Summary over seeds (mean ± 95% interval)</h2>{interval_table(study)}"
        f"<h2>Runs</h2>{summary_table(runs)}<h2>Figures</h2>" + "".join(plot_html(p) for p in plots)
    )
    return page("depthlens depth study", body)


def write_study_report(study_json: str | Path, out: str | Path) -> None:
    """Read ``study.json`` and write the HTML page atomically."""
    atomic_write_text(out, build_study_page(StudyResult.load(study_json)))
