"""The report's figures, drawn with matplotlib into PNG bytes (no pyplot global state).

Text from result files (method names) only reaches a PNG, never the HTML unescaped;
its ``$`` signs are escaped so a name cannot switch on mathtext and break drawing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.report.inputs import CutRow, Plan

Values = Sequence[float | None]
_RC: dict[str, Any] = {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3}


def new_figure(w: float = 7.0, h: float = 3.2) -> Any:
    """A matplotlib Figure of ``w`` x ``h`` inches (matplotlib is an optional extra)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # an extra, not a core dependency
        raise DepthlensError(
            "the report needs matplotlib; install it with pip install 'depthlens[report]'"
        ) from exc
    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def png_bytes(fig: Any) -> bytes:
    """Render a Figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def nan_floats(values: Values) -> list[float]:
    """Floats for plotting: a missing value (None) becomes NaN, a gap in the line."""
    return [float("nan") if v is None else float(v) for v in values]


def plot_style() -> Any:
    """Context manager with the report's matplotlib style."""
    import matplotlib

    return matplotlib.rc_context(_RC)  # type: ignore[arg-type]


def _block_axis(ax: Any, n: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("block index (0 = first)")
    ax.set_xlim(-0.5, n - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _int_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _plain_log(ax: Any) -> None:
    """Log y axis labelled 20, 30, 40 rather than 2×10^1."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    fmt = FuncFormatter(lambda v, _pos: f"{v:.4g}")
    ax.yaxis.set_major_formatter(fmt)
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 10:  # under one decade: label the minor ticks too
        ax.yaxis.set_minor_formatter(fmt)


def plain(text: str) -> str:
    """Data text for a matplotlib label: no mathtext."""
    return text.replace("$", r"\$")


def lines_plot(
    series: Sequence[tuple[str, Values]],
    ylabel: str,
    *,
    percent: bool = False,
    hline: float | None = None,
    log: bool = False,
) -> bytes:
    """One line per metric against block index."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        n = max(len(v) for _, v in series)
        scale = 100.0 if percent else 1.0
        for label, vals in series:
            ax.plot(
                range(len(vals)),
                [x * scale for x in nan_floats(vals)],
                marker="o",
                ms=3,
                label=label,
            )
        if hline is not None:
            ax.axhline(hline, color="grey", lw=0.8, ls="--")
        if log:
            _plain_log(ax)
        _block_axis(ax, n)
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize=8)
        return png_bytes(fig)


def lens_plot(
    kl: Values, kl_rev: Values | None, jsd: Values | None, top1: Values, top5: Values | None
) -> bytes:
    """KL / JSD (left) and top-1 / top-5 agreement (right) against depth."""
    with plot_style():
        fig = new_figure(7.0, 3.4)
        left, right = fig.subplots(1, 2)
        n = len(kl)
        left.plot(range(n), nan_floats(kl), marker="o", ms=3, label="KL(p_L ‖ p_l)")
        if kl_rev:
            left.plot(range(n), nan_floats(kl_rev), ms=3, ls=":", label="KL(p_l ‖ p_L)")
        if jsd:
            left.plot(range(n), nan_floats(jsd), marker="s", ms=3, label="JSD (≤ ln 2)")
        left.set_yscale("symlog", linthresh=0.1)
        left.set_ylabel("divergence from the output (nats)")
        _block_axis(left, n)
        left.legend(fontsize=8)
        right.plot(
            range(n), [100 * x for x in nan_floats(top1)], marker="o", ms=3, label="top-1 agreement"
        )
        if top5:
            right.plot(
                range(n),
                [100 * x for x in nan_floats(top5)],
                marker="s",
                ms=3,
                label="top-5 overlap",
            )
        right.set_ylim(-2, 102)
        right.set_ylabel("agreement with the output (% of tokens)")
        _block_axis(right, n)
        right.legend(fontsize=8)
        return png_bytes(fig)


def depth_plot(hist: Sequence[int], mean: float | None) -> bytes:
    """Histogram of prediction depth (0..L)."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        total = max(1, sum(hist))
        ax.bar(range(len(hist)), [100 * c / total for c in hist], color="#4c72b0", label="tokens")
        if mean is not None:
            ax.axvline(mean, color="#c44e52", ls="--", label=f"mean {mean:.1f}")
        ax.set_xlabel("prediction depth (blocks applied before the top-1 settles)")
        ax.set_ylabel("share of tokens (%)")
        ax.legend(fontsize=8)
        return png_bytes(fig)


def norm_plot(norm: Values, growth: Values | None) -> bytes:
    """Mean ‖h_l‖ (log, left) and per-block growth ratio (right axis)."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        n = len(norm)
        ax.plot(range(n), nan_floats(norm), marker="o", ms=3, color="#4c72b0", label="mean ‖h_l‖")
        _plain_log(ax)
        ax.set_ylabel("residual norm ‖h_l‖ (model units, log)")
        _block_axis(ax, n)
        handles, labels = ax.get_legend_handles_labels()
        if growth:
            ax2 = ax.twinx()
            ax2.plot(
                range(len(growth)),
                nan_floats(growth),
                marker="s",
                ms=3,
                color="#dd8452",
                label="‖h_l+1‖ / ‖h_l‖",
            )
            ax2.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax2.set_ylabel("growth per block (ratio)")
            ax2.grid(False)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=8, loc="upper left")
        return png_bytes(fig)


def bars_plot(values: Values, ylabel: str, label: str, highlight: Sequence[int] = ()) -> bytes:
    """One bar per block, the highlighted ones in another colour."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        colours = ["#c44e52" if i in highlight else "#4c72b0" for i in range(len(values))]
        ax.bar(range(len(values)), nan_floats(values), color=colours, label=label)
        if highlight:
            from matplotlib.patches import Patch

            ax.legend(
                handles=[
                    Patch(color="#4c72b0", label=label),
                    Patch(color="#c44e52", label="lowest (cut first)"),
                ],
                fontsize=8,
            )
        else:
            ax.legend(fontsize=8)
        _block_axis(ax, len(values))
        ax.set_ylabel(ylabel)
        return png_bytes(fig)


def _mark_cell(ax: Any, mark: tuple[int, int] | None, label: str) -> None:
    """Outline one heatmap cell (x, y) in red, with a legend entry."""
    if mark is None:
        return
    from matplotlib.patches import Rectangle

    cell = Rectangle(
        (mark[0] - 0.5, mark[1] - 0.5), 1, 1, fill=False, edgecolor="#ff3030", lw=2.2, label=label
    )
    ax.add_patch(cell)
    ax.legend(fontsize=8, loc="upper right")


def heatmap_axes(fig: Any, arr: Any, cmap: str, cbar: str, **imshow: Any) -> Any:
    """An axes of ``fig`` showing ``arr`` as a heatmap with a colour bar labelled ``cbar``.

    Row 0 is at the bottom and NaN cells are blank; ``imshow`` adds to the image's
    options (an ``extent``).
    """
    import numpy as np

    ax = fig.add_subplot()
    ax.grid(False)
    im = ax.imshow(
        np.ma.masked_invalid(arr),
        origin="lower",
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        **imshow,
    )
    fig.colorbar(im, ax=ax, label=cbar)
    return ax


def heatmap_plot(
    matrix: Sequence[Values],
    xlabel: str,
    ylabel: str,
    cbar: str,
) -> bytes:
    """A heatmap of a (possibly ragged, null-holed) matrix, row i at height i."""
    import numpy as np

    width = max((len(r) for r in matrix), default=0)
    arr = np.full((len(matrix), width), np.nan)
    for i, r in enumerate(matrix):
        arr[i, : len(r)] = nan_floats(r)
    with plot_style():
        fig = new_figure(7.0, 3.8)
        ax = heatmap_axes(fig, arr, "viridis", cbar)
        _int_ticks(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return png_bytes(fig)


def angular_plot(ang: Sequence[Values], mark: tuple[int, int] | None, label: str) -> bytes:
    """Angular distance, start block (x) by span length n (y, 1-based)."""
    import numpy as np

    width = max((len(r) for r in ang), default=0)
    arr = np.full((width, len(ang)), np.nan)  # (n, start)
    for s, row in enumerate(ang):
        arr[: len(row), s] = nan_floats(row)
    with plot_style():
        fig = new_figure(7.0, 3.8)
        ax = heatmap_axes(
            fig,
            arr,
            "viridis_r",
            "angular distance arccos(cos)/π (0..1)",
            extent=(-0.5, len(ang) - 0.5, 0.5, width + 0.5),
        )
        _int_ticks(ax)
        ax.set_xlabel("first block of the span (start)")
        ax.set_ylabel("span length n (blocks)")
        _mark_cell(ax, mark, label)
        return png_bytes(fig)


def _by_method(rows: Sequence[CutRow]) -> dict[str, list[CutRow]]:
    out: dict[str, list[CutRow]] = {}
    for r in rows:
        if r.n > 0:
            out.setdefault(r.method, []).append(r)
    return {m: sorted(v, key=lambda r: r.n) for m, v in sorted(out.items())}


def ppl_plot(rows: Sequence[CutRow], base: float | None) -> bytes:
    """Perplexity against number of removed blocks, one line per method."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        for method, rs in _by_method(rows).items():
            pts = [(r.n, r.ppl) for r in rs if r.ppl is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=4, label=plain(method))
        if base is not None:
            ax.axhline(base, color="black", lw=1, ls="--", label=f"original ({base:.2f})")
        _plain_log(ax)
        _int_ticks(ax)
        ax.set_xlabel("blocks removed (n)")
        ax.set_ylabel("perplexity (log scale, lower is better)")
        ax.legend(fontsize=8)
        return png_bytes(fig)


def speed_plot(rows: Sequence[CutRow]) -> bytes:
    """Measured prefill/decode speed-up and the ideal one against blocks removed."""
    with plot_style():
        fig = new_figure()
        ax = fig.add_subplot()
        for method, rs in _by_method(rows).items():
            for attr, ls, tag in (
                ("prefill_speedup", "-", "prefill"),
                ("decode_speedup", ":", "decode"),
            ):
                pts = [(r.n, getattr(r, attr)) for r in rs if getattr(r, attr) is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=4, ls=ls, label=plain(f"{method} {tag}"))
        ideal = sorted({(r.n, r.ideal_speedup) for r in rows if r.n > 0 and r.ideal_speedup})
        if ideal:
            ax.plot(*zip(*ideal), color="black", ls="--", lw=1, label="ideal")
        ax.axhline(1.0, color="grey", lw=0.8)
        _int_ticks(ax)
        ax.set_xlabel("blocks removed (n)")
        ax.set_ylabel("speed-up over the original (×)")
        ax.legend(fontsize=8)
        return png_bytes(fig)


def mark_of(plan: Plan | None, span: tuple[int, int, float] | None) -> tuple[int, int] | None:
    """(start, n) to outline on the angular heatmap."""
    if plan is not None:
        return (plan.start, plan.n) if plan.start is not None and plan.n else None
    return (span[0], span[1]) if span else None
