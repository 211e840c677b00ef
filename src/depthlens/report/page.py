"""The HTML page: one self-contained file, every string from data escaped.

The page carries a Content-Security-Policy that allows only its own inline script (by
hash), inline style and ``data:`` images, so nothing is fetched even by accident; the
escaping does not rely on it.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from depthlens.metrics.catalog.causal import REASONING_SCORE, SETTLING_LAYER

# After load: count plots whose image decoded to a non-empty bitmap, for humans and tests.
SCRIPT = """
window.addEventListener("load", function () {
  var figs = document.querySelectorAll("figure.plot");
  var ok = 0;
  figs.forEach(function (f) {
    var img = f.querySelector("img");
    if (img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0) { ok += 1; }
    else { f.classList.add("broken"); }
  });
  document.body.dataset.plotsExpected = String(figs.length);
  document.body.dataset.plots = String(ok);
});
"""

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #1d2330; background: #f6f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
  border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
.sub { color: #5b6474; margin: 0 0 14px; }
table.meta { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.meta td, table.meta th { padding: 2px 12px 2px 0; text-align: left; vertical-align: top; }
table.meta th { color: #5b6474; font-weight: 500; }
table.opts tbody { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); }
details { margin: 8px 0; } summary { cursor: pointer; color: #3a5a9a; }
.meaning { background: #eef4ff; border-left: 4px solid #3a6fd8; padding: 10px 16px; }
.meaning li { margin: 4px 0; }
figure { margin: 18px 0; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #33394a; font-size: 14px; margin-top: 4px; }
figure.broken::after { content: "this plot failed to load"; color: #c00; }
.tokens { font: 13px/2 ui-monospace, monospace; }
.tokens span { padding: 1px 2px; margin: 0 1px; border-radius: 3px; white-space: pre; }
.legend span { display: inline-block; width: 18px; height: 10px; }
footer { color: #7a8394; font-size: 12px; margin-top: 40px; }
"""


def esc(x: Any) -> str:
    """HTML-escape any value (quotes too: safe in text and attributes)."""
    return html.escape(str(x), quote=True)


@dataclass(frozen=True)
class Plot:
    """One figure: a stable id, a title, the PNG and a caption computed from numbers."""

    id: str
    title: str
    png: bytes
    caption: str


def plot_html(p: Plot) -> str:
    """A ``<figure class="plot">`` with the PNG inline as a data URI."""
    data = base64.b64encode(p.png).decode("ascii")
    return (
        f'<figure class="plot" id="plot-{esc(p.id)}">'
        f'<img alt="{esc(p.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(p.caption)}</figcaption></figure>"
    )


def meta_table(rows: Sequence[tuple[str, Any]], cls: str = "meta") -> str:
    """A key/value table, both sides escaped."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{esc(cls)}">{body}</table>'


def _settle_colour(layer: int | None, n_layers: int) -> str:
    """Early settling = light yellow, late = dark purple (viridis-like ends)."""
    if layer is None:
        return "#dddddd"
    t = min(1.0, max(0.0, layer / max(1, n_layers)))
    a, b = (253, 231, 37), (68, 1, 84)
    rgb = [round(x + (y - x) * t) for x, y in zip(a, b)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def token_strip(
    tokens: Sequence[dict[str, Any]], n_layers: int, caption: str, limit: int = 400
) -> str:
    """Tokens coloured by settling layer; every token text escaped."""
    spans = []
    for t in tokens[:limit]:
        layer = t.get(SETTLING_LAYER.name)
        layer = (
            int(layer) if isinstance(layer, int | float) and not isinstance(layer, bool) else None
        )
        colour = _settle_colour(layer, n_layers)
        fg = "#fff" if layer is not None and layer > n_layers / 2 else "#000"
        score = t.get(REASONING_SCORE.name)
        tip = f"settling layer {layer}" + (
            f", reasoning score {score:.3g}" if isinstance(score, int | float) else ""
        )
        spans.append(
            f'<span style="background:{colour};color:{fg}" title="{esc(tip)}">'
            f"{esc(t.get('token', ''))}</span>"
        )
    more = f" (first {limit} of {len(tokens)} tokens)" if len(tokens) > limit else ""
    legend = (
        f'<p class="legend">settles at block 0 <span style="background:'
        f'{_settle_colour(0, n_layers)}"></span> … <span style="background:'
        f'{_settle_colour(n_layers, n_layers)}"></span> block {n_layers}{esc(more)}</p>'
    )
    return (
        f'<figure class="strip" id="strip-tokens"><div class="tokens">{"".join(spans)}'
        f"</div>{legend}<figcaption>{esc(caption)}</figcaption></figure>"
    )


def csp(script: str) -> str:
    """Content-Security-Policy allowing exactly this inline script."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def page(title: str, body: str) -> str:
    """The whole document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp(SCRIPT))}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main><script>{SCRIPT}</script></body></html>\n"
    )
