"""Cut units: whole blocks, attention sublayers and MLP sublayers, with their costs.

A unit is ``(kind, block)`` with kind ``"block"``, ``"attn"`` or ``"mlp"`` and the block's
original index; its text form (plan JSON, CLI) is ``"attn:3"``. A set of units is kept
normal: a block that lost both sublayers is the unit ``("block", i)`` (removed, with its
least-squares map where the family takes one), except block 0, which keeps its two
sublayer units (a block run needs a block before it to merge its map into).

A :class:`Budget` says how much to remove: a fraction of per-token FLOPs at a context
length, a fraction of parameters, or a measured speed-up (prefill or decode at a context
length, from :mod:`depthlens.cut.unit_time`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from depthlens.arch.removed import PARTS, Part, out_projection_path, sublayer_refusal
from depthlens.arch.spec import blocks_of
from depthlens.capture.hooks import first_tensor, replace_first
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token, savings, sublayer_costs
from depthlens.models.loading import LoadedModel

Unit = tuple[str, int]
KINDS = ("block", *PARTS)
BUDGET_KINDS = ("flops", "params", "speedup")


def unit_text(u: Unit) -> str:
    """``("attn", 3)`` -> ``"attn:3"``."""
    return f"{u[0]}:{u[1]}"


def parse_unit(text: str) -> Unit:
    """``"attn:3"`` -> ``("attn", 3)``; a one-line error for anything else."""
    kind, _, idx = text.partition(":")
    if kind not in KINDS or not idx.isdigit():
        raise DepthlensError(f"a cut unit is block:I, attn:I or mlp:I, got {text!r}")
    return kind, int(idx)


def normal_units(units: Iterable[Unit]) -> tuple[Unit, ...]:
    """Sorted units with attn:i + mlp:i (i >= 1) folded into block:i."""
    got = set(units)
    for i in {i for k, i in got if k in PARTS}:
        if i >= 1 and ("attn", i) in got and ("mlp", i) in got:
            got -= {("attn", i), ("mlp", i)}
            got.add(("block", i))
    order = {k: n for n, k in enumerate(KINDS)}
    return tuple(sorted(got, key=lambda u: (u[1], order[u[0]])))


def removed_blocks(units: Iterable[Unit]) -> tuple[int, ...]:
    """The whole blocks of ``units``, ascending."""
    return tuple(sorted(i for k, i in units if k == "block"))


def removed_sublayers(units: Iterable[Unit]) -> tuple[Unit, ...]:
    """The sublayer units of ``units`` (blocks left out), in order."""
    return tuple(u for u in normal_units(units) if u[0] in PARTS)


@dataclass(frozen=True)
class Budget:
    """How much a unit cut removes: ``kind`` "flops" | "params" | "speedup" and its value.

    flops / params: the fraction removed, in (0, 1). speedup: the measured speed-up, > 1,
    of ``mode`` ("prefill" or "decode") at ``context`` tokens.
    """

    kind: str
    value: float
    context: int = 512
    mode: str = "prefill"

    def check(self) -> None:
        """Refuse a budget no cut can meet, with the flag to change."""
        if self.kind not in BUDGET_KINDS:
            raise DepthlensError(f"budget kind must be one of {BUDGET_KINDS}, got {self.kind!r}")
        if self.kind == "speedup":
            if not self.value > 1:
                raise DepthlensError(f"--budget-speedup must be > 1, got {self.value}")
            if self.mode not in ("prefill", "decode"):
                raise DepthlensError(f"--speed-mode must be prefill or decode, got {self.mode}")
        elif not 0 < self.value < 1:
            raise DepthlensError(f"--budget-{self.kind} must be in (0, 1), got {self.value}")
        if self.context < 1:
            raise DepthlensError(f"--context must be at least 1, got {self.context}")

    @property
    def target(self) -> float:
        """The share of the cost to remove (a speed-up s needs 1 - 1/s of the time)."""
        return 1 - 1 / self.value if self.kind == "speedup" else self.value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


def unit_shares(lm: LoadedModel, budget: Budget, timing: Any = None) -> dict[Unit, float]:
    """Each unit's share of the whole model's cost in the budget's measure.

    ``timing``: for a speed-up budget, a :class:`~depthlens.cut.unit_time.UnitTime`.
    """
    refusal = sublayer_refusal(lm.arch)
    if refusal is not None:
        raise DepthlensError(refusal)
    if budget.kind == "speedup":
        if timing is None:
            raise DepthlensError("a speed-up budget needs the measured unit times")
        per = [{p: timing.share[p] for p in PARTS} for _ in range(lm.num_layers)]
    else:
        costs = sublayer_costs(lm, budget.context)
        if budget.kind == "flops":
            total = float(flops_per_token(lm, budget.context)["total"])
        else:
            total = float(sum(p.numel() for p in lm.model.parameters()))
        key = "flops" if budget.kind == "flops" else "params"
        per = [{p: c[p][key] / total for p in PARTS} for c in costs]
    out: dict[Unit, float] = {}
    for i, row in enumerate(per):
        out[("attn", i)], out[("mlp", i)] = row["attn"], row["mlp"]
        out[("block", i)] = row["attn"] + row["mlp"]
    return out


def units_savings(lm: LoadedModel, units: Iterable[Unit], context: int) -> dict[str, Any]:
    """Predicted parameter and FLOP savings of removing ``units`` (original indices)."""
    costs = sublayer_costs(lm, context)
    blocks = blocks_of(lm.model, lm.arch)
    fl = flops_per_token(lm, context)
    f_removed = p_removed = 0
    for kind, i in normal_units(units):
        if kind == "block":
            f_removed += fl["blocks"][i]
            p_removed += sum(p.numel() for p in blocks[i].parameters())
        else:
            f_removed += costs[i][kind]["flops"]
            p_removed += costs[i][kind]["params"]
    return savings(lm, fl, p_removed, f_removed)


def zero_output_hooks(model: nn.Module, spec: Any, subs: Iterable[Unit]) -> Callable[[], list]:
    """Hook factory: each sublayer of ``subs`` adds 0 (its output projection returns 0)."""
    blocks = blocks_of(model, spec)

    def on_out(_m: nn.Module, _a: tuple, out: Any) -> Any:
        return replace_first(out, torch.zeros_like(first_tensor(out)))

    def make() -> list:
        return [
            blocks[i]
            .get_submodule(out_projection_path(spec, _part(k)))
            .register_forward_hook(on_out)
            for k, i in subs
        ]

    return make


def _part(kind: str) -> Part:
    if kind == "attn":
        return "attn"
    if kind == "mlp":
        return "mlp"
    raise DepthlensError(f"{kind} is not a sublayer")
