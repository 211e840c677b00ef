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
