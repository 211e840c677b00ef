"""The cut plan: which blocks go, what replaces them, and why (SPEC "Cutting depth").

A plan is computed (``plan_cut``), previewed (``CutPlan.preview``), then applied
(``apply_cut_``) and saved (``save_pruned``). It is a frozen dataclass with a versioned
JSON form; the ReplaceMe matrix ``T`` travels with the object but not in the JSON (it is
merged into the saved weights).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import torch

from depthlens._version import SCHEMA_VERSION, __version__
from depthlens.errors import DepthlensError

#: Every method of SPEC "Cutting depth", in the order of its table.
METHODS: tuple[str, ...] = (
    "replaceme-ls",
    "replaceme-cos",
    "angular",
    "block-influence",
    "greedy-loss",
    "last",
    "random",
)
REPLACEME: tuple[str, ...] = ("replaceme-ls", "replaceme-cos")
#: Methods whose removed blocks form one contiguous span chosen by angular distance.
SPAN_METHODS: tuple[str, ...] = (*REPLACEME, "angular")
PLAN_KIND = "depthlens.cut_plan"


def now() -> str:
    """UTC timestamp for the ``created`` field."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CutPlan:
    """Blocks to remove from a model of ``num_layers`` blocks, and the replacement."""

    method: str
    num_layers: int
    removed: tuple[int, ...]  # original block indices, sorted
    merge_into: int | None  # block whose MLP output projection absorbs T (ReplaceMe)
    options: dict[str, Any]
    selection: dict[str, Any]  # the metric values that chose the blocks
    fit: dict[str, Any]  # ReplaceMe fit quality (relative residuals), else {}
    savings: dict[str, Any]  # predicted parameter and FLOP savings
    model: dict[str, Any]  # identity of the model planned on (ref, family, class)
    calibration: dict[str, Any]  # data identity and token count
    created: str = field(default_factory=now)
    transform: torch.Tensor | None = field(default=None, compare=False, repr=False)
    version: str = __version__
    schema_version: int = SCHEMA_VERSION
    kind: str = PLAN_KIND

    @property
    def kept(self) -> tuple[int, ...]:
        """Original indices of the blocks that stay."""
        gone = set(self.removed)
        return tuple(i for i in range(self.num_layers) if i not in gone)

    @property
    def n_removed(self) -> int:
        """How many blocks the plan removes."""
        return len(self.removed)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the matrix T, which lives in the saved weights)."""
        return {
            "kind": self.kind,
            "schema_version": self.schema_version,
            "version": self.version,
            "created": self.created,
            "method": self.method,
            "num_layers": self.num_layers,
            "removed": list(self.removed),
            "kept": list(self.kept),
            "merge_into": self.merge_into,
            "has_transform": self.transform is not None,
            "options": self.options,
            "selection": self.selection,
            "fit": self.fit,
            "savings": self.savings,
            "model": self.model,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CutPlan:
        """Rebuild a plan from :meth:`to_dict` output (T is not restored)."""
        if d.get("kind") != PLAN_KIND:
            raise DepthlensError(f"not a depthlens cut plan (kind {d.get('kind')!r})")
        if int(d.get("schema_version", -1)) > SCHEMA_VERSION:
            raise DepthlensError(
                f"plan schema {d.get('schema_version')} is newer than this depthlens "
                f"({SCHEMA_VERSION}); upgrade depthlens"
            )
        return cls(
            method=d["method"],
            num_layers=int(d["num_layers"]),
            removed=tuple(int(i) for i in d["removed"]),
            merge_into=d.get("merge_into"),
            options=dict(d.get("options", {})),
            selection=dict(d.get("selection", {})),
            fit=dict(d.get("fit", {})),
            savings=dict(d.get("savings", {})),
            model=dict(d.get("model", {})),
            calibration=dict(d.get("calibration", {})),
            created=d.get("created", now()),
            version=d.get("version", __version__),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
        )

    def preview(self) -> str:
        """Human-readable summary: which blocks, why, what it saves, how well T fits."""
        lines = [
            f"plan: {self.method} removes {self.n_removed} of {self.num_layers} blocks "
            f"(original indices {list(self.removed)})"
        ]
        why = self.selection.get("why")
        if why:
            lines.append(f"why: {why}")
        for key, val in self.selection.items():
            if key != "why":
                lines.append(f"  {key}: {_fmt(val)}")
        s = self.savings
        if s:
            lines.append(
                f"saves {s['params_removed']:,} parameters ({100 * s['params_fraction']:.1f}%), "
                f"{100 * s['flops_fraction']:.1f}% of FLOPs per token at context "
                f"{s['context']}; ideal speed-up {s['ideal_speedup']:.3f}x"
            )
        if self.merge_into is not None:
            lines.append(f"replacement: linear map T merged into block {self.merge_into}'s MLP "
                         "output projection")
        lines.extend(fit_quality_lines(self.fit))
        for key, val in self.fit.items():
            lines.append(f"  fit {key}: {_fmt(val)}")
        cal = self.calibration
        if cal:
            lines.append(f"calibration: {cal.get('name')} ({cal.get('n_tokens')} tokens)")
        return "\n".join(lines)


def fit_quality_lines(fit: dict[str, Any]) -> list[str]:
    """The held-out fit quality: ordinary tokens first, the first position apart.

    The first position (BOS / attention sink) has a ‖Z‖ far above the rest; pooled with
    them it makes |MT − Z|/|Z| look about 20× smaller than on ordinary tokens.
    """
    if "heldout_tokens" not in fit:
        return []
    held = fit.get("heldout_tokens") or 0
    if held == 0:
        return ["fit quality: not measured (no held-back windows: --holdout-every 0, or too "
                "few calibration windows); the residual on the fit tokens is not a test"]
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
