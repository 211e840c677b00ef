"""A one-page report: logit lens vs tuned lens, per depth, on each evaluated text."""

from __future__ import annotations

from typing import Any

from depthlens.report.page import Plot, esc, meta_table, page, plot_html
from depthlens.report.plots import lines_plot
from depthlens.results import Envelope


def _name(env: Envelope) -> str:
    src = env.data.get("source") if isinstance(env.data, dict) else None
    if isinstance(src, dict):
        return str(src.get("name") or src.get("path") or "data")
    return str(env.data.get("name", "data")) if isinstance(env.data, dict) else "data"


def _section(env: Envelope, payload: dict[str, Any]) -> str:
    lenses = payload["lenses"]
    data = _name(env)
    kl = [(f"{n} lens", v["lens_kl"]) for n, v in lenses.items()]
    top1 = [(f"{n} lens", v["lens_top1_agree"]) for n, v in lenses.items()]
    n_layers = len(next(iter(lenses.values()))["lens_kl"])
    caption = (
        "KL(p_L ‖ p_lens(h_l)) at each block's output, nats, log scale; lower reads "
        "the model's own prediction better."
    )
    if {"logit", "tuned"} <= set(lenses):
        lo, tu = lenses["logit"]["lens_kl"], lenses["tuned"]["lens_kl"]
        wins = sum(1 for a, b in zip(lo[:-1], tu[:-1], strict=True) if b < a)
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
        (f"block {l}", "  ".join(f"{n}: {v['lens_kl'][l]:.3f}" for n, v in lenses.items()))
        for l in range(n_layers)
    ]
    meta = [
        ("data", data),
        ("tokens", payload.get("n_tokens")),
        ("lens", env.options.get("lens")),
        ("model", env.model.get("ref")),
    ]
    return (
        f"<section><h2>{esc(data)}</h2>{meta_table(meta)}"
        f"{''.join(plot_html(p) for p in plots)}"
        f"<details><summary>KL per block (nats)</summary>{meta_table(rows)}</details>"
        f"</section>"
    )


def lens_report_html(results: list[tuple[Envelope, dict[str, Any]]]) -> str:
    """The page for one or more lens-eval results (of the same model)."""
    model = results[0][0].model.get("ref", "model")
    intro = (
        "<h1>Logit lens vs tuned lens</h1><p>Tuned lens: Belrose et al. 2023, "
        "arXiv 2303.08112 (one affine translator per block, trained on KL(p_L ‖ p_l)). "
        f"Model: {esc(model)}.</p>"
    )
    return page(f"tuned lens: {model}", intro + "".join(_section(e, p) for e, p in results))
