"""The lens accumulator shared by the profile and ``lens eval``, driven by the lens records.

Every streamed lens record (``per_lens_token`` set, :mod:`depthlens.metrics.catalog.lens`)
gets one row of float64 sums and one of token counts per depth: the reported value is
sum / count, so a record defined on fewer tokens (the cross-entropy needs a next token)
needs no code of its own. The prediction-depth histogram and the output's own loss are
the two statistics that are not per-depth means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from depthlens.metrics.accumulate import Accumulator, host_sum, ratio, zeros
from depthlens.metrics.lens import (
    FinalDist,
    LensKernel,
    LensView,
    Readout,
    default_chunk,
    prediction_depth,
)
from depthlens.metrics.registry import streamed_lens_records
from depthlens.results import clean_json

_EAGER = LensKernel("eager")


def lens_metric_names() -> tuple[str, ...]:
    """The streamed lens metrics, from their records (order = declaration order)."""
    return tuple(r.name for r in streamed_lens_records())


@dataclass
class LensSums(Accumulator):
    """Float64 sums of the lens records over the lens tokens (one column per depth)."""

    per_depth: torch.Tensor  # (M, L): row i sums record i of lens_metric_names()
    counts: torch.Tensor  # (M, L): tokens behind each sum
    final_ce: torch.Tensor  # (): the output's own loss, over tokens with a next token
    prediction_depth_hist: torch.Tensor  # (L+1,)
    n_lens_tokens: torch.Tensor  # ()
    n_ce_tokens: torch.Tensor  # ()

    @classmethod
    def zeros(cls, n_layers: int) -> LensSums:
        """Every lens accumulator with its final shape (all ranks agree)."""
        m = len(lens_metric_names())
        return cls(
            per_depth=zeros(m, n_layers),
            counts=zeros(m, n_layers),
            final_ce=zeros(),
            prediction_depth_hist=zeros(n_layers + 1),
            n_lens_tokens=zeros(),
            n_ce_tokens=zeros(),
        )

    def add_depth(self, i: int, view: LensView) -> None:
        """Add depth ``i``'s per-token values of every streamed lens record."""
        for r, rec in enumerate(streamed_lens_records()):
            assert rec.per_lens_token is not None  # streamed_lens_records() keeps only these
            vals = rec.per_lens_token(view)
            self.per_depth[r, i] += host_sum(vals)
            self.counts[r, i] += float(vals.numel())

    def means(self) -> dict[str, list[float | None]]:
        """{lens metric: per-depth mean} (None where no token was seen)."""
        return {
            name: [clean_json(v) for v in ratio(self.per_depth[r], self.counts[r]).tolist()]
            for r, name in enumerate(lens_metric_names())
        }

    def depth_summary(self) -> dict[str, Any]:
        """The prediction-depth histogram (0..L blocks applied) and its mean."""
        hist = self.prediction_depth_hist
        n = float(hist.sum())
        mean = float((hist * torch.arange(hist.shape[0])).sum()) / n if n else None
        return {
            "histogram": [int(v) for v in hist.tolist()],
            "mean": clean_json(mean),
            "unit": "blocks applied before the top-1 prediction settles (0..L)",
        }

    def loss(self) -> float | None:
        """The model's own next-token loss on the lens tokens."""
        return clean_json(float(ratio(self.final_ce, self.n_ce_tokens)))


def accumulate_lens(
    sums: LensSums,
    lens: Readout,
    layer_states: list[torch.Tensor],
    final_state: torch.Tensor,
    next_ids: torch.Tensor,
    depth_offset: int,
    chunk: int | None = None,
    kernel: LensKernel = _EAGER,
) -> None:
    """Add lens statistics for the selected tokens.

    ``layer_states[i]``: (N, d) state read at lens depth i (i = 0..L-1); ``final_state``:
    h_L; ``next_ids``: (N,) next-token ids, -1 where there is none (end of a window);
    ``depth_offset``: state index of lens depth 0 (1 when reading block outputs, 0 inputs),
    so the prediction-depth histogram counts blocks applied (0..L).
    """
    n_layers = len(layer_states)
    chunk = chunk or default_chunk(lens)
    for c0 in range(0, final_state.shape[0], chunk):
        sl = slice(c0, c0 + chunk)
        fin = FinalDist.of(lens.logits(final_state[sl], n_layers))  # h_L: state index L
        nxt = next_ids[sl].to(fin.p.device)
        has_next = nxt >= 0
        fin_logp = fin.logp.gather(-1, nxt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        sums.final_ce += host_sum(-fin_logp[has_next])
        agree = torch.empty(n_layers, fin.top1.shape[0], dtype=torch.bool)
        for i, hs in enumerate(layer_states):
            view = LensView.of(lens.logits(hs[sl], i + depth_offset), fin, kernel, nxt)
            sums.add_depth(i, view)
            agree[i] = view.top1_agree.cpu()
        depth = (prediction_depth(agree) + depth_offset).clamp_max(n_layers)
        sums.prediction_depth_hist += torch.bincount(depth, minlength=n_layers + 1).double()
        sums.n_lens_tokens += float(fin.top1.shape[0])
        sums.n_ce_tokens += float(has_next.sum())
