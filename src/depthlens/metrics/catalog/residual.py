"""Residual-stream metrics: what each block writes and how far the stream moves.

Computed by :mod:`depthlens.metrics.residual` in one streaming pass; every value is a mean
of per-token values over real tokens (padding and, by default, the first position out).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from depthlens.metrics.catalog.papers import CSORDAS, CURSE, GROMOV, REPLACEME, SHORTGPT
from depthlens.metrics.records import MetricRecord, metric
from depthlens.metrics.vectors import BlockVectors

PerToken = Callable[[BlockVectors], torch.Tensor]

_MEAN = "float64 sum of per-token values + token count, all-reduced across ranks"
_FIN = "sum / count (mean of per-token values)"


def _block(
    name: str,
    definition: str,
    label: str,
    caption: str,
    per_token: PerToken,
    *,
    table: bool = False,
    papers: tuple = (CSORDAS,),
    unit: str = "",
) -> MetricRecord:
    return metric(
        MetricRecord(
            name=name,
            family="residual",
            definition=definition,
            papers=papers,
            shape="block",
            accumulate=_MEAN,
            finalize=_FIN,
            caption=caption,
            label=label,
            unit=unit,
            table=table,
            per_token=per_token,
        )
    )


REL_CONTRIB_ATTN = _block(
    "rel_contrib_attn",
    "‖a_l‖ / ‖h_l‖",
    "attn/h",
    "How much block l's attention adds, relative to the stream it reads.",
    lambda v: v.ratio("a", "h"),
    table=True,
)
REL_CONTRIB_MLP = _block(
    "rel_contrib_mlp",
    "‖m_l‖ / ‖x_l‖, x_l = h_l + a_l (h_l for parallel blocks)",
    "mlp/h",
    "How much block l's MLP adds, relative to the stream it reads.",
    lambda v: v.ratio("m", "ha"),
    table=True,
)
REL_CONTRIB_BLOCK = _block(
    "rel_contrib_block",
    "‖Δ_l‖ / ‖h_l‖, Δ_l = h_{l+1} − h_l",
    "Δ/h",
    "How much block l changes the residual stream; low values mark blocks that barely write.",
    lambda v: v.ratio("delta", "h"),
    table=True,
)
COS_ATTN = _block(
    "cos_attn",
    "cos(a_l, h_l)",
    "cos(a,h)",
    "Negative: the attention erases part of the stream it reads.",
    lambda v: v.cos("a", "h"),
)
COS_MLP = _block(
    "cos_mlp",
    "cos(m_l, x_l), x_l as for rel_contrib_mlp",
    "cos(m,h)",
    "Negative: the MLP erases part of the stream it reads.",
    lambda v: v.cos("m", "ha"),
)
COS_BLOCK = _block(
    "cos_block",
    "cos(Δ_l, h_l)",
    "cos(Δ,h)",
    "Negative: the block writes against the stream.",
    lambda v: v.cos("delta", "h"),
    table=True,
)
BLOCK_INFLUENCE = _block(
    "block_influence",
    "1 − cos(h_l, h_{l+1})",
    "BI",
    "ShortGPT's redundancy score: blocks with the lowest values are removed first.",
    lambda v: 1.0 - v.cos("h", "out"),
    table=True,
    papers=(SHORTGPT,),
)
RESID_RMS_GROWTH = _block(
    "resid_rms_growth",
    "‖h_{l+1}‖ / ‖h_l‖",
    "growth",
    "Pre-LN output-variance growth per block (Curse of Depth).",
    lambda v: v.ratio("out", "h"),
    papers=(CURSE,),
)
RESID_NORM = metric(
    MetricRecord(
        name="resid_norm",
        family="residual",
        definition="‖h_l‖ for l = 0..L",
        papers=(CURSE,),
        shape="layer",
        accumulate=_MEAN,
        finalize=_FIN,
        label="‖h‖",
        table=True,
        caption="Size of the residual stream at each depth; steady growth is the Pre-LN "
        "variance growth of the Curse of Depth.",
    )
)
ANGULAR_DISTANCE = metric(
    MetricRecord(
        name="angular_distance",
        family="residual",
        definition="arccos(cos(h_l, h_{l+n})) / π for n = 1..n_max (default L/2); all tokens, "
        "or the last token of each window with --last-token-only",
        papers=(GROMOV, REPLACEME, CURSE),
        shape="block_span",
        accumulate=_MEAN,
        finalize=_FIN,
        plot="heatmap",
        label="angular",
        caption="Row l, column n: how far the stream turns between h_l and h_{l+n} (0 = same "
        "direction); the darkest cell of column n is the span ReplaceMe and Gromov et al. "
        "remove.",
        deviation="all real tokens by default; the papers use the last token "
        "(--last-token-only reproduces them)",
    )
)
