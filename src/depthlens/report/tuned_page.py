"""A one-page report: logit lens vs tuned lens, per depth, on each evaluated text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from depthlens.metrics.catalog.lens import LENS_KL, LENS_TOP1
from depthlens.report.page import Plot, esc, meta_table, page, plot_html
from depthlens.report.plots import lines_plot
from depthlens.results import Envelope

if TYPE_CHECKING:
    from depthlens.tuned.evaluate import LensEval


def _name(env: Envelope) -> str:
    src = env.data.get("source") if isinstance(env.data, dict) else None
    if isinstance(src, dict):
        return str(src.get("name") or src.get("path") or "data")
    return str(env.data.get("name", "data")) if isinstance(env.data, dict) else "data"


def _section(result: LensEval) -> str:
    env, lenses, kl_name = result.envelope, result.lenses, LENS_KL.name
    data = _name(env)
    kl = [(f"{n} lens", v[kl_name]) for n, v in lenses.items()]
    top1 = [(f"{n} lens", v[LENS_TOP1.name]) for n, v in lenses.items()]
    n_layers = len(next(iter(lenses.values()))[kl_name])
    caption = (
        "KL(p_L ‖ p_lens(h_l)) at each block's output, nats, log scale; lower reads "
        "the model's own prediction better."
    )
    if {"logit", "tuned"} <= set(lenses):
        lo, tu = lenses["logit"][kl_name], lenses["tuned"][kl_name]
        pairs = zip(lo[:-1], tu[:-1], strict=True)
        wins = sum(1 for a, b in pairs if a is not None and b is not None and b < a)
        caption += (
            f" The tuned lens is below the logit lens at {wins} of {n_layers - 1} "
            f"blocks before the last."
        )
    plots = [
        Plot(
            f"kl-{data}",
            f"lens KL on {data}",
            lines_plot(kl, "KL to the output (nats)", log=True),
            caption,
        ),
        Plot(
            f"top1-{data}",
            f"top-1 agreement on {data}",
            lines_plot(top1, "top-1 = output's (%)", percent=True),
            "Share of tokens whose lens top-1 equals the model's own top-1.",
        ),
    ]
    rows = [
        (f"block {l}", "  ".join(f"{n}: {v[kl_name][l]:.3f}" for n, v in lenses.items()))
        for l in range(n_layers)
    ]
    meta = [
        ("data", data),
        ("tokens", result.n_tokens),
        ("lens", env.options.get("lens")),
        ("model", env.model.get("ref")),
    ]
    return (
        f"<section><h2>{esc(data)}</h2>{meta_table(meta)}"
        f"{''.join(plot_html(p) for p in plots)}"
        f"<details><summary>KL per block (nats)</summary>{meta_table(rows)}</details>"
        f"</section>"
    )


def lens_report_html(results: list[LensEval]) -> str:
    """The page for one or more lens-eval results (of the same model)."""
    model = results[0].model.get("ref", "model")
    intro = (
        "<h1>Logit lens vs tuned lens</h1><p>Tuned lens: Belrose et al. 2023, "
        "arXiv 2303.08112 (one affine translator per block, trained on KL(p_L ‖ p_l)). "
        f"Model: {esc(model)}.</p>"
    )
    return page(f"tuned lens: {model}", intro + "".join(_section(r) for r in results))
