"""The ``depthlens.json`` manifest of a pruned checkpoint: what was cut, from what, how.

Written by :func:`depthlens.cut.save.save_pruned`; read here, beside the loader, so that
evaluation can name a loaded model's cut without depending on the cutting code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlens.results import read_result

MANIFEST = "depthlens.json"
MANIFEST_KIND = "depthlens.pruned"


def read_manifest(path: str | Path | None) -> dict[str, Any] | None:
    """The manifest (envelope and payload, flat) of a pruned checkpoint directory, or None."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    env, payload = read_result(f, MANIFEST_KIND)
    return {**env.to_dict(), **payload}


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
