"""The page and the terminal summary of a ``repr`` or ``similarity`` result.

Plots reuse :mod:`depthlens.report.plots` (figure set-up, PNG rendering, heatmaps) and
:mod:`depthlens.report.page` (escaping, figures, the page shell). Every string that comes
from a model, a dataset or a result file is escaped before it reaches the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlens.metrics.catalog import repr as RC
from depthlens.report.page import Plot, esc, meta_table, page, plot_html
from depthlens.report.plots import heatmap_plot, new_figure, plain, plot_style, png_bytes
from depthlens.report.text import fmt, render_table

Series = Sequence[tuple[str, Sequence[float | None]]]


def layer_plot(
    series: Series,
    ylabel: str,
    names: Sequence[str],
    *,
    log: bool = False,
    marks: Sequence[tuple[int, str]] = (),
) -> bytes:
    """One line per series against layer index; ``marks`` = (layer, label) vertical lines."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        for label, vals in series:
            ys = [float("nan") if v is None else float(v) for v in vals]
            ax.plot(range(len(ys)), ys, marker="o", ms=3, label=plain(label))
        for i, (layer, label) in enumerate(marks):
            ax.axvline(layer, color=f"C{i + 3}", ls="--", lw=1, label=plain(label))
        if log:
            ax.set_yscale("log")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"layer index (0 = {plain(names[0])}, {len(names) - 1} = {plain(names[-1])})")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize=8)
        return png_bytes(fig)


def _probe_marks(summary: dict[str, Any]) -> list[tuple[int, str]]:
    marks = []
    if summary.get("probe_best_test") is not None:
        marks.append((int(summary["probe_best_test"]), "best layer (held out)"))
    best_ood = (summary.get("probe_best_ood") or {}).get("mean")
    if best_ood is not None:
        marks.append((int(best_ood), "best layer (OOD mean)"))
    return marks


def repr_plots(payload: dict[str, Any]) -> list[Plot]:
    """The per-layer figures of a ``repr`` result."""
    m = payload["metrics"]
    plots = _geometry_plots(m, payload["layers"])
    if RC.PROBE_ACC.name in m:
        plots += _probe_plots(payload)
    plots.append(cka_plot(m[RC.CKA.name], "layer (this model)", "layer (this model)"))
    return plots


def _geometry_plots(m: dict[str, Any], names: Sequence[str]) -> list[Plot]:
    """Anisotropy, intrinsic dimension (TwoNN, PCA) and GRIDE across scales."""
    plots = [
        Plot(
            RC.ANISOTROPY.name,
            "Anisotropy",
            layer_plot(
                [
                    ("mean cosine", m[RC.ANISOTROPY.name]),
                    ("centred", m[RC.ANISOTROPY_CENTRED.name]),
                ],
                "mean pairwise cosine",
                names,
            ),
            "Mean cosine between sampled states; the centred curve removes the common direction.",
        ),
        Plot(
            "intrinsic-dim",
            "Intrinsic dimension",
            layer_plot(
                [
                    ("TwoNN", m[RC.INTRINSIC_DIM.name]),
                    ("TwoNN MLE", m["intrinsic_dim_mle"]),
                    ("PCA 90%", m[RC.PCA_DIM.name]),
                ],
                "dimension",
                names,
                log=True,
            ),
            "TwoNN (Facco et al. 2017) is the local dimension; PCA 90% the linear one.",
        ),
    ]
    gride = m.get(RC.GRIDE.name)
    if gride:
        n_scales = min(len(g) for g in gride)
        series = [(f"GRIDE k={2**j}", [g[j] for g in gride]) for j in range(n_scales)]
        plots.append(
            Plot(
                RC.GRIDE.name,
                "Intrinsic dimension against scale (GRIDE)",
                layer_plot(series, "dimension", names, log=True),
                "GRIDE (Denti et al. 2022) from the k-th and 2k-th neighbours: curves that "
                "agree across k mean a dimension that does not depend on the scale.",
            )
        )
    return plots


def _probe_plots(payload: dict[str, Any]) -> list[Plot]:
    """Probe accuracy (held out and OOD) and neural collapse, for labelled data."""
    m, names = payload["metrics"], payload["layers"]
    s = payload.get("summary", {})
    series = [("held out", m[RC.PROBE_ACC.name])] + [
        (f"OOD {k}", v) for k, v in m[RC.PROBE_ACC_OOD.name].items()
    ]
    nc2 = [
        ("equinorm (CV)", m[RC.NC2_EQUINORM.name]),
        ("equiangular (std cos)", m[RC.NC2_EQUIANGULAR.name]),
        ("|cos + 1/(C-1)|", m["nc2_max_angle"]),
    ]
    return [
        Plot(
            "probe",
            "Linear probe accuracy",
            layer_plot(series, "accuracy", names, marks=_probe_marks(s)),
            probe_caption(payload),
        ),
        Plot(
            RC.NC1.name,
            "Neural collapse (NC1)",
            layer_plot([("NC1 = tr(Σ_W Σ_B⁺)/C", m[RC.NC1.name])], "NC1", names, log=True),
            "Lower: examples of a class cluster tighter around their class mean.",
        ),
        Plot(
            "nc2",
            "Neural collapse (NC2)",
            layer_plot(nc2, "", names),
            "0 for class means that form a simplex equiangular tight frame.",
        ),
    ]


def cka_plot(matrix: Sequence[Sequence[float | None]], xlabel: str, ylabel: str) -> Plot:
    """The CKA heatmap (rows = first model's layers, columns = second's)."""
    png = heatmap_plot(matrix, xlabel, ylabel, "linear CKA")
    return Plot(
        RC.CKA.name,
        "Linear CKA between layers",
        png,
        "Linear CKA (streamed unbiased minibatch HSIC); bright = similar layers.",
    )


def probe_caption(payload: dict[str, Any]) -> str:
    """Where the probe peaks in and out of distribution, against the last layer."""
    m, s = payload["metrics"], payload.get("summary", {})
    last = len(m[RC.PROBE_ACC.name]) - 1
    bt, bo = s.get("probe_best_test"), (s.get("probe_best_ood") or {}).get("mean")
    parts = []
    if bt is not None:
        parts.append(
            f"held out: best layer {bt} ({m[RC.PROBE_ACC.name][bt]:.3f}) vs last layer "
            f"{last} ({m[RC.PROBE_ACC.name][last]:.3f})"
        )
    if bo is not None:
        ood = m[RC.PROBE_ACC_OOD.name]["mean"]
        parts.append(f"OOD mean: best layer {bo} ({ood[bo]:.3f}) vs last ({ood[last]:.3f})")
    return "; ".join(parts) + "."


def summary_lines(kind: str, payload: dict[str, Any]) -> list[str]:
    """A per-layer table for the terminal."""
    m = payload["metrics"]
    if kind == "similarity":
        rows = [
            [
                j,
                name,
                max(range(len(m[RC.CKA.name])), key=lambda i: m[RC.CKA.name][i][j] or -1.0),
                fmt(max((r[j] or 0.0) for r in m[RC.CKA.name])),
            ]
            for j, name in enumerate(payload["layers_b"])
        ]
        return [render_table(["B layer", "name", "closest A layer", "CKA"], rows)]
    head = ["layer", "aniso", "aniso_c", "ID", "GRIDE k=1/8/32", "PCA90", "dup", "massive"]
    labelled = RC.PROBE_ACC.name in m
    if labelled:
        head += ["probe", "probe OOD", "NC1"]
    rows = []
    for l, name in enumerate(payload["layers"]):
        row = [
            name,
            fmt(m[RC.ANISOTROPY.name][l]),
            fmt(m[RC.ANISOTROPY_CENTRED.name][l]),
            fmt(m[RC.INTRINSIC_DIM.name][l]),
            _gride_cell(m, l),
            m[RC.PCA_DIM.name][l],
            (m.get("duplicates") or ["–"] * (l + 1))[l],
            (m.get("massive") or ["–"] * (l + 1))[l],
        ]
        if labelled:
            ood = m[RC.PROBE_ACC_OOD.name].get("mean", [None] * len(m[RC.PROBE_ACC.name]))
            row += [fmt(m[RC.PROBE_ACC.name][l]), fmt(ood[l]), fmt(m[RC.NC1.name][l])]
        rows.append(row)
    lines = [render_table(head, rows)]
    if labelled:
        lines.append(probe_caption(payload))
    return lines


def _gride_cell(m: dict[str, Any], layer: int) -> str:
    g = (m.get(RC.GRIDE.name) or [[]] * (layer + 1))[layer]
    return "/".join(fmt(g[j]) for j in (0, 3, 5) if j < len(g)) or "–"


def _definitions(payload: dict[str, Any]) -> str:
    items = []
    for name, rec in (payload.get("definitions") or {}).items():
        cites = "; ".join(
            f"{p['authors']} ({p['year']}), {p['title']}" for p in rec.get("papers", [])
        )
        items.append(
            f"<li><b>{esc(name)}</b>: {esc(rec.get('definition', ''))} <i>({esc(cites)})</i></li>"
        )
    return f"<h2>Definitions</h2><ul>{''.join(items)}</ul>"


def repr_page(res: Any) -> str:
    """The whole HTML document for a ReprResult or a SimilarityResult."""
    model, payload = res.model, res.payload()
    title = f"depthlens {res.kind}: {model.get('ref')}"
    meta = [
        ("model", model.get("ref")),
        ("class", model.get("class")),
        ("data", res.data.get("name") or (res.data.get("train") or {}).get("name")),
        ("tokens / examples", res.tokens),
        ("options", res.options),
        ("samples", payload.get("samples")),
    ]
    if res.kind == "similarity":
        meta.insert(1, ("model B", payload["model_b"].get("ref")))
        plots = [cka_plot(payload["metrics"][RC.CKA.name], "layer of B", "layer of A")]
    else:
        plots = repr_plots(payload)
    body = (
        f"<h1>{esc(title)}</h1>{meta_table(meta)}"
        + "".join(plot_html(p) for p in plots)
        + _definitions(payload)
    )
    return page(title, body)


def write_repr_page(path: str | Path, res: Any) -> None:
    """Write the page atomically."""
    from depthlens.io import atomic_write_text

    atomic_write_text(path, repr_page(res))
