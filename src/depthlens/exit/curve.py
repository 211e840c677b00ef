"""The quality/compute curve of early exit, per rule and threshold (CALM, Schuster et al. 2022).

One pass records, for every held-out token and every block output (depth e = 1..L), the
lens's top-1 token, top-1 probability, entropy and the log-probability of the actual next
token. Every rule and threshold is then evaluated on those readings: mean exit depth, FLOPs
saved, agreement of the exited token with the full model's top-1, and the perplexity of the
exited predictions.

FLOPs: ``flops_saved`` counts the skipped blocks only (the ideal of SPEC "Evaluation");
``flops_saved_net`` also charges each lens readout taken before the exit (a translator and
a full unembedding per checked depth), which a real decoder pays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from depthlens.capture.stream import stream_states
from depthlens.data.masks import next_token_ids, real_positions
from depthlens.data.windows import TokenWindows
from depthlens.evaluate.flops import flops_per_token
from depthlens.exit.rules import ExitRule, exit_depth
from depthlens.metrics.catalog.exit import (
    EXIT_AGREE,
    EXIT_DEPTH,
    EXIT_FLOPS,
    EXIT_FLOPS_NET,
    EXIT_PPL,
)
from depthlens.metrics.lens import Readout
from depthlens.models.loading import LoadedModel


@dataclass(frozen=True)
class Readings:
    """Per token (N) and depth (L) lens readings; column e-1 = after e blocks."""

    top1: torch.Tensor  # (N, L) int64
    conf: torch.Tensor  # (N, L) top-1 probability
    entropy: torch.Tensor  # (N, L) nats
    nll: torch.Tensor  # (N, L) −log p_e(next token); NaN where there is no next token

    @property
    def n_layers(self) -> int:
        """L."""
        return int(self.top1.shape[1])


def _read_chunk(
    lens: Readout, states: list[torch.Tensor], nxt: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Readings of one chunk; ``states``: h_1..h_L, each (c, d)."""
    cols: list[tuple[torch.Tensor, ...]] = []
    has = nxt >= 0
    for e, h in enumerate(states, start=1):
        logp = torch.log_softmax(lens.logits(h, e), dim=-1).cpu()  # (c, V)
        conf, top1 = logp.max(dim=-1)
        ent = -(logp.exp() * logp).sum(-1)
        nll = -logp.gather(-1, nxt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        cols.append((top1, conf.exp(), ent, torch.where(has, nll, torch.nan)))
    return tuple(torch.stack(c, dim=1) for c in zip(*cols, strict=True))


def collect_readings(
    lm: LoadedModel,
    data: TokenWindows,
    lens: Readout,
    *,
    batch_size: int = 4,
    chunk: int = 128,
    progress: bool = True,
) -> Readings:
    """Run the model over ``data`` and read every block output with ``lens``."""
    valid = real_positions(data.attention_mask, include_first_token=False)
    nxt_all = next_token_ids(data)
    parts: list[tuple[torch.Tensor, ...]] = []
    for rows, all_states in stream_states(
        lm, data, batch_size, valid, label="exit readings", progress=progress
    ):
        states = all_states[1:]  # block outputs h_1..h_L
        nxt = nxt_all[rows][valid[rows]]
        for c0 in range(0, nxt.shape[0], chunk):
            parts.append(
                _read_chunk(lens, [h[c0 : c0 + chunk] for h in states], nxt[c0 : c0 + chunk])
            )
    top1, conf, ent, nll = (torch.cat(p) for p in zip(*parts, strict=True))
    return Readings(top1, conf.double(), ent.double(), nll.double())


def flop_costs(lm: LoadedModel, context: int) -> dict[str, Any]:
    """Per-token FLOPs of each block, the head, and one lens readout."""
    fl = flops_per_token(lm, context)
    model: Any = lm.model
    d = int(model.config.get_text_config().hidden_size)
    readout = fl["head"] + 2 * d * d  # unembedding + one affine translator
    return {**fl, "readout": readout}


def rule_point(rule: ExitRule, r: Readings, costs: dict[str, Any]) -> dict[str, Any]:
    """One point of the curve: what exiting by ``rule`` costs and keeps."""
    n_layers = r.n_layers
    depth = exit_depth(rule, r.conf, r.entropy, r.top1)  # (N,) in 1..L
    rows = torch.arange(depth.shape[0])
    exited_top1 = r.top1[rows, depth - 1]
    blocks = torch.tensor(costs["blocks"], dtype=torch.float64)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), blocks.cumsum(0)])  # cost of e blocks
    total = float(costs["total"])
    skipped = (cum[-1] - cum[depth]).mean().item()
    checks = (depth - 1).double().mean().item()  # readouts before the one that is the output
    nll = r.nll[rows, depth - 1]
    has = ~torch.isnan(nll)
    mean_nll = float(nll[has].mean()) if bool(has.any()) else math.nan
    hist = torch.bincount(depth, minlength=n_layers + 1)[1:]
    return {
        "threshold": rule.threshold,
        "label": rule.label(),
        EXIT_DEPTH.name: float(depth.double().mean()),
        EXIT_FLOPS.name: skipped / total,
        EXIT_FLOPS_NET.name: (skipped - checks * costs["readout"]) / total,
        "ideal_speedup": total / (total - skipped),
        EXIT_AGREE.name: float((exited_top1 == r.top1[:, -1]).double().mean()),
        EXIT_PPL.name: math.exp(mean_nll) if math.isfinite(mean_nll) else None,
        "exited_early": float((depth < n_layers).double().mean()),
        "exit_histogram": [int(v) for v in hist],
    }


def exit_curve(
    r: Readings, rules: dict[str, tuple[float, ...]], costs: dict[str, Any], min_depth: int = 1
) -> dict[str, Any]:
    """Every rule × threshold point, plus the full model's own perplexity."""
    final = r.nll[:, -1]
    has = ~torch.isnan(final)
    curve = {
        kind: [rule_point(ExitRule(kind, t, min_depth), r, costs) for t in thresholds]
        for kind, thresholds in rules.items()
    }
    return {
        "full_model": {
            "perplexity": math.exp(float(final[has].mean())) if bool(has.any()) else None,
            "depth": r.n_layers,
        },
        "rules": curve,
        "n_tokens": int(r.top1.shape[0]),
        "n_ce_tokens": int(has.sum()),
    }
