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

from depthlens.results import Envelope, Enveloped, read_result

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


def load_manifest(path: str | Path | None) -> CutManifest | None:
    """The manifest of a checkpoint directory, or None when it has none (never cut)."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    return CutManifest.load(f)


def read_manifest(path: str | Path | None) -> dict[str, Any] | None:
    """The manifest (envelope and payload, flat) of a pruned checkpoint directory, or None."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    env, payload = read_result(f, MANIFEST_KIND)
    return {**env.to_dict(), **payload}
