"""The cut plan: which blocks go, what replaces them, and why (SPEC "Cutting depth").

A plan is computed (``plan_cut``), previewed (``CutPlan.preview``), then applied
(``apply_cut_``) and saved (``save_pruned``). It is a frozen dataclass with a versioned
JSON form; the ReplaceMe maps ``T`` travel with the object, and a plan written to disk
(:func:`depthlens.cut.plan_io.save_plan`) puts them in a safetensors file beside the JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from depthlens.errors import DepthlensError
from depthlens.results import Envelope, Enveloped
from depthlens.spans import blocks_text

PLAN_KIND = "depthlens.cut_plan"


def plan_envelope(lm: Any, windows: Any, options: dict[str, Any]) -> Envelope:
    """The header of a plan of ``lm`` calibrated on ``windows`` (a LoadedModel, TokenWindows)."""
    return Envelope(
        kind=PLAN_KIND,
        model=lm.identity(),
        data=windows.identity,
        options=options,
        tokens={"calibration": windows.n_tokens, "windows": len(windows)},
    )


@dataclass(frozen=True)
class CutPlan(Enveloped):
    """Blocks to remove from a model of ``num_layers`` blocks, and the replacement."""

    envelope: Envelope  # model planned on, calibration data and tokens, every option
    method: str
    num_layers: int
    removed: tuple[int, ...]  # original block indices, sorted
    merge_into: int | None  # block whose MLP output projection absorbs T (ReplaceMe)
    selection: dict[str, Any]  # the metric values that chose the blocks
    fit: dict[str, Any]  # ReplaceMe fit quality (relative residuals), else {}
    savings: dict[str, Any]  # predicted parameter and FLOP savings
    transform: torch.Tensor | None = field(default=None, compare=False, repr=False)
    # Multi-run methods: (block i_k, T_k) per run, merged into block i_k's MLP projection.
    merges: tuple[tuple[int, torch.Tensor], ...] = field(default=(), compare=False, repr=False)
    # Sublayer cuts (units-ls): ("attn" | "mlp", original block index), in blocks that stay.
    sublayers: tuple[tuple[str, int], ...] = ()
    KIND: ClassVar[str] = PLAN_KIND

    @property
    def kept(self) -> tuple[int, ...]:
        """Original indices of the blocks that stay."""
        gone = set(self.removed)
        return tuple(i for i in range(self.num_layers) if i not in gone)

    @property
    def n_removed(self) -> int:
        """How many blocks the plan removes."""
        return len(self.removed)

    @property
    def calibration(self) -> dict[str, Any]:
        """Name and size of the calibration data (from the envelope)."""
        src = self.data.get("source") or {}
        return {
            "name": src.get("name"),
            "n_tokens": self.tokens.get("calibration"),
            "n_windows": self.tokens.get("windows"),
        }

    def maps(self) -> dict[int, torch.Tensor]:
        """Every linear map the plan merges, by the block whose MLP absorbs it."""
        out = dict(self.merges)
        if self.merge_into is not None and self.transform is not None:
            out[self.merge_into] = self.transform
        return out

    def payload(self) -> dict[str, Any]:
        """JSON form (the maps T go to a safetensors file beside it: :mod:`cut.plan_io`)."""
        return {
            "method": self.method,
            "num_layers": self.num_layers,
            "removed": list(self.removed),
            "sublayers": [f"{k}:{i}" for k, i in self.sublayers],
            "kept": list(self.kept),
            "merge_into": self.merge_into,
            "merge_blocks": [i for i, _ in self.merges],
            "has_transform": bool(self.maps()),
            "selection": self.selection,
            "fit": self.fit,
            "savings": self.savings,
        }

    @classmethod
    def _from_parts(cls, env: Envelope, d: dict[str, Any]) -> CutPlan:
        """Rebuild a plan from its JSON (the maps are restored by :mod:`cut.plan_io`)."""
        if env.schema_version < 2:  # schema 1 kept the data and token count apart
            cal = d.get("calibration") or {}
            counts = {"calibration": cal.get("n_tokens"), "windows": cal.get("n_windows")}
            tokens = {k: int(v) for k, v in counts.items() if v is not None}
            env = dataclasses.replace(env, data=dict(cal.get("data") or {}), tokens=tokens)
        missing = [k for k in ("method", "num_layers", "removed") if k not in d]
        if missing:
            raise DepthlensError(f"cut plan JSON lacks {', '.join(missing)}")
        return cls(
            envelope=env,
            method=d["method"],
            num_layers=int(d["num_layers"]),
            removed=tuple(int(i) for i in d["removed"]),
            sublayers=tuple(_unit(u) for u in d.get("sublayers") or ()),
            merge_into=d.get("merge_into"),
            selection=dict(d.get("selection") or {}),
            fit=dict(d.get("fit") or {}),
            savings=dict(d.get("savings") or {}),
        )

    def preview(self) -> str:
        """Human-readable summary: which blocks, why, what it saves, how well T fits."""
        lines = [
            f"plan: {self.method} removes {self.n_removed} of {self.num_layers} blocks: "
            f"{blocks_text(self.removed)} (original indices)"
        ]
        if self.sublayers:
            subs = ", ".join(f"{k}:{i}" for k, i in self.sublayers)
            lines.append(f"  and {len(self.sublayers)} sublayer(s) of kept blocks: {subs}")
        why = self.selection.get("why")
        if why:
            lines.append(f"why: {why}")
        for key, val in self.selection.items():
            if key not in ("why", "trace", "best_by_n"):
                lines.append(f"  {key}: {_fmt(val)}")
        lines.extend(_trace_lines(self.selection.get("trace")))
        s = self.savings
        if s:
            lines.append(
                f"saves {s['params_removed']:,} parameters ({100 * s['params_fraction']:.1f}%), "
                f"{100 * s['flops_fraction']:.1f}% of FLOPs per token at context "
                f"{s['context']}; ideal speed-up {s['ideal_speedup']:.3f}x"
            )
        if self.merge_into is not None:
            lines.append(
                f"replacement: linear map T merged into block {self.merge_into}'s MLP "
                "output projection"
            )
        if self.merges:
            lines.append(
                f"replacement: one linear map per run, merged into the MLP output "
                f"projections of blocks {[i for i, _ in self.merges]}"
            )
        lines.extend(fit_quality_lines(self.fit))
        for key, val in self.fit.items():
            lines.append(f"  fit {key}: {_fmt(val)}")
        cal = self.calibration
        if cal:
            lines.append(f"calibration: {cal.get('name')} ({cal.get('n_tokens')} tokens)")
        return "\n".join(lines)


def _unit(text: str) -> tuple[str, int]:
    kind, _, idx = str(text).partition(":")
    if kind not in ("attn", "mlp") or not idx.isdigit():
        raise DepthlensError(f"cut plan JSON: a sublayer is attn:I or mlp:I, got {text!r}")
    return kind, int(idx)


def _trace_lines(trace: Any, top: int = 3) -> list[str]:
    """The search trace, one line per step: the best candidates and their scores."""
    if not trace:
        return []
    if "unit" in trace[0]:  # units-ls: one unit per step
        return ["search trace (step: unit, share freed so far, kl):"] + [
            f"  {st['step']:>2}: {st['unit']:<9} {st['freed']:.4f} kl {st['kl']:.4f}"
            for st in trace
        ]
    lines = ["search trace (step: kept set <- best candidates as block:kl):"]
    for st in trace:
        best = sorted(st["candidates"], key=lambda c: c[2])[:top]
        cands = ", ".join(f"{c[1]}:{c[2]:.4f}" for c in best)
        lines.append(
            f"  {st['step']:>2}: {st['kept'][0]['removed']} <- {cands} "
            f"({len(st['candidates'])} scored)"
        )
    return lines


def fit_quality_lines(fit: dict[str, Any]) -> list[str]:
    """The held-out fit quality: ordinary tokens first, the first position apart.

    The first position (BOS / attention sink) has a ‖Z‖ far above the rest; pooled with
    them it makes |MT − Z|/|Z| look about 20× smaller than on ordinary tokens.
    """
    if "heldout_tokens" not in fit:
        return []
    held = fit.get("heldout_tokens") or 0
    if held == 0:
        return [
            "fit quality: not measured (no held-back windows: --holdout-every 0, or too "
            "few calibration windows); the residual on the fit tokens is not a test"
        ]
    lines = []
    for name in ("ls", "cos"):
        r = fit.get(f"rel_residual_{name}_heldout")
        if r is None:
            continue
        lines.append(
            f"fit quality ({name}) on {held} held-back ordinary tokens: |MT - Z|/|Z| = "
            f"{r:.4f} (plain removal, T = I: {_fmt(fit.get('rel_residual_identity_heldout'))})"
        )
        first = fit.get(f"rel_residual_{name}_first")
        if first is not None:
            lines.append(
                f"  first position (BOS / attention sink) of {fit.get('heldout_first_positions')}"
                f" held-back windows, apart: {first:.4f} (T = I: "
                f"{_fmt(fit.get('rel_residual_identity_first'))})"
            )
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and v and isinstance(v[0], float):
        return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
    return str(v)
