"""Causal metrics: what changes when a block is skipped, and how late predictions settle.

Computed by :mod:`depthlens.causal.skip` (skip sweep, reusing cached prefixes) and
:mod:`depthlens.causal.think` (reasoning score, settling layer).
"""

from __future__ import annotations

from depthlens.metrics.catalog.papers import CSORDAS, DEEP_THINKING, REASONING
from depthlens.metrics.records import MetricRecord, metric

_MEAN = "float64 sum of per-token values + count, all-reduced"

SKIP_OUT_KL = metric(
    MetricRecord(
        name="skip_out_kl",
        family="causal",
        definition="replace block l by identity (h_{l+1} := h_l), run the rest; "
        "KL(p_L ‖ p_L^skip) per position",
        papers=(CSORDAS,),
        shape="block",
        accumulate=_MEAN + "; running max",
        finalize="mean (skip_out_kl_mean) and max (skip_out_kl_max) over positions",
        unit="nats",
        label="skip KL",
        caption="How much the model's output changes when block l is skipped.",
    )
)
DELTA_LOSS = metric(
    MetricRecord(
        name="delta_loss",
        family="causal",
        definition="next-token loss with block l skipped minus the clean loss",
        papers=(CSORDAS,),
        shape="block",
        accumulate=_MEAN,
        finalize="mean skipped loss − mean clean loss",
        unit="nats",
        label="Δloss",
        caption="What skipping block l costs in next-token loss.",
    )
)
SKIP_FUTURE = metric(
    MetricRecord(
        name="skip_future",
        family="causal",
        definition="for j > l: ‖Δ_j^skip − Δ_j‖ / ‖Δ_j‖ with block l skipped",
        papers=(CSORDAS,),
        shape="layer_pair",
        accumulate=_MEAN + "; running max (skip_future_max)",
        finalize="sum / count per (l, j)",
        plot="heatmap",
        label="skip→future",
        caption="Row l, column j: how much skipping block l changes what block j computes.",
    )
)
REASONING_SCORE = metric(
    MetricRecord(
        name="reasoning_score",
        family="causal",
        definition="per token t: mean over late blocks j ∈ J of JSD(p_L(t), p(h_{j+1})(t)); "
        "J = the last ⌈L/4⌉ blocks before the final one",
        papers=(REASONING,),
        shape="token",
        accumulate="per token (a prompt or generation is short)",
        finalize="per token, and the mean over the scored span",
        label="R",
        caption="High: the late blocks still revise the prediction (deeper reasoning).",
        deviation="the readout of late block j is taken at its output h_{j+1}",
    )
)
SETTLING_LAYER = metric(
    MetricRecord(
        name="settling_layer",
        family="causal",
        definition="per token: smallest l with min_{l' ≤ l} JSD(p_L, p(h_{l'})) ≤ g (g = 0.5)",
        papers=(DEEP_THINKING,),
        shape="token",
        accumulate="per token",
        finalize="per token; deep_thinking_ratio = share with settling layer ≥ ρ·L (ρ = 0.85)",
        label="settle",
        caption="The depth at which a token's prediction comes within g of the "
        "final one; tokens settling late are 'deep-thinking' tokens.",
    )
)
