"""The ``depthlens.json`` manifest of a pruned checkpoint: what was cut, from what, how.

Written by :func:`depthlens.cut.save.save_pruned` (and carried over, with a ``healing``
record, by ``depthlens heal``); read here, beside the loader, so that evaluation can name a
loaded model's cut without depending on the cutting code. Readers go through the typed
:class:`CutManifest`, never through the JSON's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from depthlens.results import Envelope, Enveloped

MANIFEST = "depthlens.json"
MANIFEST_KIND = "depthlens.pruned"


@dataclass(frozen=True)
class CutManifest(Enveloped):
    """A cut checkpoint's record.

    The envelope describes the cut model, ``base_model`` the model it was cut from; ``plan``
    is the full plan (:class:`depthlens.cut.CutPlan` JSON).
    """

    envelope: Envelope
    method: str
    removed: list[int]  # original block indices
    num_layers_original: int
    num_layers: int
    base_model: dict[str, Any]  # identity of the model the cut was made from
    plan: dict[str, Any] = field(default_factory=dict)
    # removed sublayers ("attn:3", "mlp:7"), by the saved model's block index; read by
    # depthlens's loader (older manifests have none)
    sublayers: list[str] = field(default_factory=list)
    healing: dict[str, Any] | None = None  # a depthlens.heal result (HealResult JSON)
    KIND: ClassVar[str] = MANIFEST_KIND

    @property
    def kept(self) -> list[int]:
        """Original indices of the blocks that stay, in order."""
        gone = set(self.removed)
        return [i for i in range(self.num_layers_original) if i not in gone]

    @property
    def merge_blocks(self) -> list[int]:
        """Original indices of the blocks whose MLP output projection absorbed a map."""
        merges = [int(i) for i in self.plan.get("merge_blocks") or []]
        into = self.plan.get("merge_into")
        if into is not None and int(into) not in merges:
            merges.append(int(into))
        return sorted(merges)


#: The name this record had on ``main`` before the heal rewrite; the same class.
PrunedManifest = CutManifest


def load_manifest(path: str | Path | None) -> CutManifest | None:
    """The manifest of a checkpoint directory, or None when it has none (never cut)."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    return CutManifest.load(f) if f.is_file() else None


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
