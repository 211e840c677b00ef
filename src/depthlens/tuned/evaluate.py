"""Logit lens vs tuned lens on the same held-out tokens, in one pass.

For every block output h_l (l = 1..L blocks applied) and each lens: KL(p_L ‖ p_lens(h_l))
in nats (tuned-lens convention, Belrose et al. 2023), top-1 agreement with the model's
output, and the cross-entropy on the actual next token. One forward per batch serves both
lenses; float64 sums, so memory does not grow with the number of tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from depthlens.capture.stream import stream_states
from depthlens.data.masks import next_token_ids
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import host_sum
from depthlens.metrics.lens import FinalDist, LensKernel, Readout, layer_stats
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope, check_same_model, read_result
from depthlens.tuned.train import train_positions

EVAL_KIND = "depthlens.lens_eval"
EVAL_METRICS = ("lens_kl", "lens_top1_agree", "lens_ce")


def _zeros(n_layers: int) -> dict[str, torch.Tensor]:
    return {m: torch.zeros(n_layers, dtype=torch.float64) for m in EVAL_METRICS}


def _add_chunk(
    sums: dict[str, torch.Tensor],
    lens: Readout,
    states: list[torch.Tensor],
    nxt: torch.Tensor,
    kernel: LensKernel,
) -> None:
    """Add one chunk of tokens: ``states`` = h_0..h_L, each (c, d); ``nxt`` (c,) or -1."""
    n_layers = len(states) - 1
    fin = FinalDist.of(lens.logits(states[n_layers], n_layers))
    has = (nxt >= 0).to(fin.p.device)
    safe = nxt.clamp_min(0).to(fin.p.device).unsqueeze(-1)
    for l in range(1, n_layers + 1):
        z = lens.logits(states[l], l)
        st = layer_stats(z, fin, kernel)
        sums["lens_kl"][l - 1] += host_sum(st["lens_kl"])
        sums["lens_top1_agree"][l - 1] += host_sum(st["lens_top1_agree"])
        ce = st["_lse"] - z.gather(-1, safe).squeeze(-1)
        sums["lens_ce"][l - 1] += host_sum(ce[has])


def compare_lenses(
    lm: LoadedModel,
    data: TokenWindows,
    lenses: dict[str, Readout],
    *,
    batch_size: int = 4,
    chunk: int = 64,
    kernel: str = "eager",
    progress: bool = True,
) -> dict[str, Any]:
    """Per-block-output metrics of every lens in ``lenses`` on the same tokens.

    ``kernel``: "eager", or "auto" for the fused torch.compile reductions of the profile.
    """
    fused = LensKernel(kernel)
    if not lenses:
        raise DepthlensError("no lens to evaluate")
    n_layers = lm.num_layers
    sums = {name: _zeros(n_layers) for name in lenses}
    valid = train_positions(data, include_first=False)
    nxt_all = next_token_ids(data)
    n_tok = n_ce = 0
    for rows, states in stream_states(
        lm, data, batch_size, valid, label="lens eval", progress=progress
    ):
        nxt = nxt_all[rows][valid[rows]]
        for c0 in range(0, states[0].shape[0], chunk):
            part = [t[c0 : c0 + chunk] for t in states]
            for name, lens in lenses.items():
                _add_chunk(sums[name], lens, part, nxt[c0 : c0 + chunk], fused)
        n_tok += int(nxt.shape[0])
        n_ce += int((nxt >= 0).sum())
    out: dict[str, Any] = {}
    for name, acc in sums.items():
        out[name] = {
            "lens_kl": (acc["lens_kl"] / n_tok).tolist(),
            "lens_top1_agree": (acc["lens_top1_agree"] / n_tok).tolist(),
            "lens_ce": (acc["lens_ce"] / max(n_ce, 1)).tolist(),
        }
    return {
        "lenses": out,
        "n_tokens": n_tok,
        "n_ce_tokens": n_ce,
        "depth": "l = 1..L blocks applied (block outputs)",
    }


def eval_envelope(
    lm: LoadedModel, data: TokenWindows, options: dict[str, Any], n_tokens: int
) -> Envelope:
    """The header of a lens-eval result."""
    return Envelope(
        kind=EVAL_KIND,
        model=lm.identity(),
        data=data.identity,
        options=options,
        tokens={"lens": n_tokens},
    )


def load_evals(paths: list[str]) -> list[tuple[Envelope, dict[str, Any]]]:
    """Read lens-eval JSONs, refusing a mix of models."""
    results = [read_result(p, EVAL_KIND) for p in paths]
    for env, _ in results[1:]:
        check_same_model(results[0][0].model, env.model, "the lens-eval results")
    return results


def evaluate_lens(
    lm: LoadedModel,
    data: TokenWindows,
    lens: str,
    *,
    batch_size: int = 4,
    kernel: str = "auto",
    progress: bool = True,
) -> tuple[Envelope, dict[str, Any]]:
    """The logit lens and ``lens`` (``tuned:DIR``) on the same tokens of ``data``."""
    from depthlens.tuned.lens import readout_for

    readouts: dict[str, Readout] = {"logit": readout_for(lm, "logit")[0]}
    info: dict[str, Any] = {"kind": "logit"}
    if lens != "logit":
        readouts["tuned"], info = readout_for(lm, lens)
    payload = compare_lenses(
        lm, data, readouts, batch_size=batch_size, kernel=kernel, progress=progress
    )
    payload["lens_used"] = info
    env = eval_envelope(
        lm,
        data,
        {"lens": lens, "batch_size": batch_size, "include_first_token": False},
        payload["n_tokens"],
    )
    return env, payload
