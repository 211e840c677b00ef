"""Draw the figures of docs/TUNED_LENS.md from the JSON results.

python docs/tuned_lens_figures.py kl_wiki.json kl_news.json exit.json
# writes docs/tuned_lens_kl.png and docs/early_exit_curve.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent


def kl_figure(paths: list[str], out: Path) -> None:
    """KL(p_L ‖ p_lens) per block for the logit and the tuned lens, one panel per text."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(paths), 3.3), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for ax, path in zip(axes, paths, strict=True):
        d = json.loads(Path(path).read_text())
        src = d["data"].get("source", {})
        name = src.get("name", "data") if isinstance(src, dict) else "data"
        for lens, style in (("logit", "o-"), ("tuned", "s-")):
            kl = d["lenses"][lens]["lens_kl"][:-1]  # the last block reads p_L itself: 0
            ax.plot(range(len(kl)), kl, style, ms=3, label=f"{lens} lens")
        ax.set_yscale("log")
        ax.set_xlabel("block (its output read)")
        ax.set_ylabel("KL(p_L ‖ p_lens), nats")
        ax.set_title(f"{name}, {d['tokens']['lens']} held-out tokens", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out)


def exit_figure(path: str, out: Path) -> None:
    """Agreement with the full model vs FLOPs saved, one line per exit rule."""
    from matplotlib.figure import Figure

    d = json.loads(Path(path).read_text())
    fig = Figure(figsize=(8.4, 3.3), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    for kind, pts in d["rules"].items():
        saved = [100 * p["flops_saved"] for p in pts]
        left.plot(saved, [100 * p["exit_agreement"] for p in pts], "o-", ms=3, label=kind)
        right.plot(saved, [p["exit_perplexity"] for p in pts], "o-", ms=3, label=kind)
    right.axhline(d["full_model"]["perplexity"], color="grey", ls="--", lw=0.8,
                  label="full model")
    left.set_ylabel("exited top-1 = full top-1 (%)")
    right.set_ylabel("perplexity of exited predictions")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("block FLOPs saved (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out)


if __name__ == "__main__":
    *kls, ex = sys.argv[1:]
    kl_figure(kls, HERE / "tuned_lens_kl.png")
    exit_figure(ex, HERE / "early_exit_curve.png")
