"""How a trained lab model uses its depth: profile and per-block removal cost.

The one-pass profile gives the relative contribution per block, the residual RMS per
layer (the variance growth of Sun et al. 2025 Fig. 4), the angular distance to the next
block and the logit-lens KL; the removal cost ΔP(ℓ) is the held-out loss with block ℓ
deleted minus the full model's loss.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

from depthlens.metrics.catalog.lens import LENS_KL
from depthlens.metrics.catalog.residual import REL_CONTRIB_BLOCK, RESID_NORM, RESID_RMS_GROWTH
from depthlens.train.config import TrainConfig

UNUSED_THRESHOLD = 0.01  # a block is "unused" when deleting it costs < 1% of the loss


def removal_costs(lm: Any, windows: Any, base_nll: float, batch_size: int) -> list[float | None]:
    """ΔP(ℓ): held-out loss with block ℓ deleted (on a copy) minus the full model's."""
    from depthlens.cut.apply import remove_blocks_
    from depthlens.evaluate.perplexity import evaluate_perplexity

    if lm.num_layers < 2:
        return [None] * lm.num_layers
    costs: list[float | None] = []
    for ell in range(lm.num_layers):
        cut = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
        remove_blocks_(cut, (ell,))
        costs.append(evaluate_perplexity(cut, windows, batch_size=batch_size)["nll"] - base_nll)
    return costs


def measure(path: Path, cfg: TrainConfig, measure_tokens: int) -> dict[str, Any]:
    """Profile and removal costs of the trained model in ``path`` on the held-out text."""
    from depthlens.data import load_text, make_windows
    from depthlens.evaluate.perplexity import evaluate_perplexity
    from depthlens.models.loading import load_model
    from depthlens.profiling import ProfileOptions, profile

    lm = load_model(str(path))
    windows = make_windows(
        load_text(cfg.eval_data, text_field=cfg.text_field),
        lm.tokenizer,
        seq_len=cfg.context,
        max_tokens=measure_tokens,
        seed=cfg.seed,
    )
    opts = ProfileOptions(batch_size=cfg.batch_size, seed=cfg.seed, lens_kernel="eager", n_max=1)
    prof = profile(lm, windows, opts, progress=False)
    base = evaluate_perplexity(lm, windows, batch_size=cfg.batch_size)["nll"]
    costs = removal_costs(lm, windows, base, cfg.batch_size)
    norms = prof.metrics.get(RESID_NORM.name, [])
    rms = [None if v is None else v / math.sqrt(cfg.width) for v in norms]
    rel = [None if c is None else c / base for c in costs]
    unused = [r < UNUSED_THRESHOLD for r in rel if r is not None]
    return {
        "eval_loss": base,
        REL_CONTRIB_BLOCK.name: prof.metrics.get(REL_CONTRIB_BLOCK.name),
        "resid_rms": rms,
        RESID_RMS_GROWTH.name: prof.metrics.get(RESID_RMS_GROWTH.name),
        "angular_distance_next": [row[0] if row else None for row in prof.angular_distance],
        LENS_KL.name: prof.metrics.get(LENS_KL.name),
        "removal_cost": costs,
        "removal_cost_rel": rel,
        "unused_depth": (sum(unused) / len(unused)) if unused else None,
        "windows": windows.to_dict(),
    }
