"""The ``depthlens.json`` manifest of a pruned checkpoint: what was cut, from what, how.

Written by :func:`depthlens.cut.save.save_pruned`; read here, beside the loader, so that
evaluation can name a loaded model's cut without depending on the cutting code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from depthlens.results import Envelope, Enveloped

MANIFEST = "depthlens.json"
MANIFEST_KIND = "depthlens.pruned"


@dataclass(frozen=True)
class PrunedManifest(Enveloped):
    """What a pruned checkpoint's ``depthlens.json`` holds; the envelope is the cut model's."""

    envelope: Envelope
    method: str  # the cut method
    removed: list[int]  # original indices of the removed blocks
    num_layers_original: int
    num_layers: int
    base_model: dict[str, Any]  # identity of the model that was cut
    plan: dict[str, Any]  # the plan, as its JSON
    # removed sublayers ("attn:3", "mlp:7"), by the saved model's block index; read by
    # depthlens's loader (older manifests have none)
    sublayers: list[str] = field(default_factory=list)
    KIND: ClassVar[str] = MANIFEST_KIND


def load_manifest(path: str | Path | None) -> PrunedManifest | None:
    """The manifest of a pruned checkpoint directory, or None when it has none."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    return PrunedManifest.load(f) if f.is_file() else None


def read_manifest(path: str | Path | None) -> dict[str, Any] | None:
    """The manifest as one flat dict (envelope and payload), or None (see load_manifest)."""
    man = load_manifest(path)
    return None if man is None else man.to_dict()


def skip_manifest_sublayers_(lm: Any) -> list[str]:
    """Skip the sublayers a pruned checkpoint's manifest names as removed (in place).

    A sublayer cut is saved in its plain-transformers form (zeroed output projections:
    exact, but computed); depthlens's loader swaps those sublayers for modules that
    compute nothing (:mod:`depthlens.arch.removed`). Returns the skipped units.
    """
    from depthlens.arch.removed import skip_sublayer_, sublayer_refusal
    from depthlens.arch.spec import blocks_of

    man = read_manifest(lm.path) if lm.path else None
    subs = list((man or {}).get("sublayers") or [])
    if not subs or sublayer_refusal(lm.arch) is not None:
        return []
    blocks = blocks_of(lm.model, lm.arch)
    for text in subs:
        part, _, idx = str(text).partition(":")
        skip_sublayer_(blocks[int(idx)], lm.arch, "attn" if part == "attn" else "mlp")
    lm.extra["sublayers_skipped"] = subs
    return subs
