"""Logit-lens metrics: how close each depth's readout is to the model's own output.

p(h) = softmax(U · final_norm(h)) with the final norm recomputed for h (plus the model's
logit scale and soft-cap), read at each block's output by default. Computed by
:mod:`depthlens.metrics.lens` on a seeded subset of ``--lens-tokens`` positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from depthlens.metrics.catalog.papers import CSORDAS, LOGIT_LENS, REASONING, TUNED_LENS
from depthlens.metrics.lens import LensView
from depthlens.metrics.records import MetricRecord, metric

PerLensToken = Callable[[LensView], torch.Tensor]

_MEAN = "float64 sum of per-token values over the lens tokens + count, all-reduced"
_FIN = "sum / count"


def _lens(
    name: str,
    definition: str,
    label: str,
    caption: str,
    papers: tuple,
    per_lens_token: PerLensToken,
    *,
    unit: str = "",
    table: bool = False,
    finalize: str = _FIN,
) -> MetricRecord:
    return metric(
        MetricRecord(
            name=name,
            family="lens",
            definition=definition,
            papers=papers,
            shape="block",
            accumulate=_MEAN,
            finalize=finalize,
            caption=caption,
            label=label,
            unit=unit,
            table=table,
            per_lens_token=per_lens_token,
        )
    )


def _top5_overlap(v: LensView) -> torch.Tensor:
    """|top5(p(h_l)) ∩ top5(p_L)| / 5 per token (k < 5 for a tiny vocabulary)."""
    k = v.fin.top5.shape[-1]
    return (v.topk.unsqueeze(-1) == v.fin.top5.unsqueeze(-2)).any(-1).sum(-1).float() / k


LENS_KL = _lens(
    "lens_kl",
    "KL(p_L ‖ p(h_l)) in nats",
    "lensKL",
    "How far block l's readout is from the model's output (0 = identical).",
    (TUNED_LENS, LOGIT_LENS),
    lambda v: v.core["kl"].clamp_min(0.0),
    unit="nats",
    table=True,
)
LENS_KL_REV = _lens(
    "lens_kl_rev",
    "KL(p(h_l) ‖ p_L) in nats",
    "revKL",
    "Reverse KL, the Csordás et al. convention.",
    (CSORDAS,),
    lambda v: v.core["kl_rev"].clamp_min(0.0),
    unit="nats",
)
LENS_JSD = _lens(
    "lens_jsd",
    "JSD(p_L, p(h_l)), natural log, in [0, ln 2]",
    "JSD",
    "Symmetric, bounded distance between readout and output.",
    (REASONING,),
    lambda v: v.core["jsd"].clamp(0.0, math.log(2.0)),  # exact range, against rounding
    unit="nats",
    table=True,
)
LENS_TOP1 = _lens(
    "lens_top1_agree",
    "share of tokens with argmax p(h_l) = argmax p_L",
    "top1",
    "Share of tokens whose top-1 guess at block l is already the model's final answer.",
    (CSORDAS,),
    lambda v: v.top1_agree.float(),
    table=True,
)
LENS_TOP5 = _lens(
    "lens_top5_overlap",
    "|top5(p(h_l)) ∩ top5(p_L)| / 5",
    "top5",
    "Overlap of the five most likely tokens with the output's.",
    (CSORDAS,),
    lambda v: _top5_overlap(v),
)
LENS_ENTROPY = _lens(
    "lens_entropy",
    "H(p(h_l)) in nats",
    "H",
    "Entropy of the readout: how undecided block l's guess is.",
    (TUNED_LENS,),
    lambda v: v.core["entropy"],
    unit="nats",
)
LENS_CE = _lens(
    "lens_ce",
    "cross-entropy of p(h_l) on the actual next token",
    "CE",
    "Loss of predicting the next token from block l's readout.",
    (TUNED_LENS,),
    lambda v: -v.next_token_logp(),
    unit="nats",
    finalize="sum / count of tokens that have a next token",
)
PREDICTION_DEPTH = metric(
    MetricRecord(
        name="prediction_depth",
        family="lens",
        definition="per token: smallest l with argmax p(h_{l'}) = argmax p_L for every l' ≥ l "
        "(0..L blocks applied)",
        papers=(CSORDAS,),
        shape="token",
        accumulate="float64 histogram over 0..L, all-reduced",
        finalize="histogram and its mean",
        plot="hist",
        label="pred. depth",
        caption="How many blocks a token needs before its top-1 prediction stops changing.",
    )
)
