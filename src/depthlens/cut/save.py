"""Save a cut model as an ordinary checkpoint (SPEC "Cutting depth").

safetensors weights, the edited config, the tokenizer and generation config, and a
``depthlens.json`` with the method, the removed original block indices, the calibration
data and its size, the library version and the full plan. Written through
:func:`depthlens.io.atomic_dir`: an interruption leaves nothing at the target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depthlens._version import SCHEMA_VERSION, __version__
from depthlens.cut.plan import CutPlan
from depthlens.errors import DepthlensError
from depthlens.io import atomic_dir, check_output_path
from depthlens.models.loading import LoadedModel, quiet_transformers

MANIFEST = "depthlens.json"


def manifest(lm: LoadedModel, plan: CutPlan) -> dict[str, Any]:
    """The ``depthlens.json`` content."""
    return {
        "kind": "depthlens.pruned",
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "method": plan.method,
        "removed": list(plan.removed),
        "num_layers_original": plan.num_layers,
        "num_layers": lm.num_layers,
        "base_model": plan.model,
        "calibration": plan.calibration,
        "calibration_tokens": plan.calibration.get("n_tokens"),
        "plan": plan.to_dict(),
    }


def save_pruned(
    lm: LoadedModel, plan: CutPlan, out_dir: str | Path, overwrite: bool = False
) -> Path:
    """Write the (already cut) ``lm`` to ``out_dir`` as an ordinary HF checkpoint."""
    out = check_output_path(out_dir, overwrite)
    if lm.num_layers != plan.num_layers - plan.n_removed:
        raise DepthlensError(
            f"the model has {lm.num_layers} blocks; apply the plan (apply_cut_) before saving"
        )
    model: Any = lm.model
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with quiet_transformers():  # no "Writing model shards" bar in our output
            model.save_pretrained(tmp, safe_serialization=True)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(tmp)
        gen = getattr(lm.model, "generation_config", None)
        if gen is not None and not (tmp / "generation_config.json").exists():
            gen.save_pretrained(tmp)
        text = json.dumps(manifest(lm, plan), indent=1, sort_keys=True) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
    return out


def read_manifest(path: str | Path | None) -> dict[str, Any] | None:
    """The ``depthlens.json`` of a pruned checkpoint directory, or None."""
    if path is None:
        return None
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    data: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
    return data
