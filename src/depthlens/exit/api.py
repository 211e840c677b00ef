"""``depthlens exit``: the quality/compute curve of every exit rule on held-out text."""

from __future__ import annotations

from typing import Any

from depthlens.data.windows import TokenWindows
from depthlens.exit.curve import collect_readings, exit_curve, flop_costs
from depthlens.exit.result import ExitResult
from depthlens.exit.rules import ExitRule
from depthlens.metrics.readout import readout_for
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope

EXIT_KIND = ExitResult.KIND


def check_sweeps(
    sweeps: dict[str, tuple[float, ...]],
    min_depth: int,
    n_layers: int | None = None,
    vocab: int | None = None,
) -> None:
    """Refuse any threshold outside its rule's range (before or after loading the model)."""
    for kind, values in sweeps.items():
        for t in values:
            ExitRule(kind, t, min_depth).check(n_layers, vocab)


def run_exit(
    lm: LoadedModel,
    data: TokenWindows,
    lens: str,
    sweeps: dict[str, tuple[float, ...]],
    *,
    min_depth: int = 1,
    batch_size: int = 4,
    progress: bool = True,
) -> ExitResult:
    """Read every block output of ``data`` with ``lens`` and evaluate every rule."""
    cfg: Any = lm.model.config
    vocab = int(cfg.get_text_config().vocab_size)
    check_sweeps(sweeps, min_depth, lm.num_layers, vocab)
    readout, info = readout_for(lm, lens)
    readings = collect_readings(lm, data, readout, batch_size=batch_size, progress=progress)
    costs = flop_costs(lm, data.seq_len)
    curve = exit_curve(readings, sweeps, costs, min_depth)
    flops = {k: costs[k] for k in ("blocks", "head", "readout", "total", "context")}
    env = Envelope(
        kind=EXIT_KIND,
        model=lm.identity(),
        data=data.identity,
        options={
            "lens": lens,
            "sweeps": {k: list(v) for k, v in sweeps.items()},
            "min_depth": min_depth,
            "batch_size": batch_size,
            "depth": "e = blocks applied, 1..L; L = the full model",
        },
        tokens={"exit": curve["n_tokens"], "ce": curve["n_ce_tokens"]},
    )
    return ExitResult(envelope=env, **curve, lens_used=info, flops_per_token=flops)
