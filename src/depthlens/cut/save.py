"""Save a cut model as an ordinary checkpoint (SPEC "Cutting depth").

safetensors weights, the edited config, the tokenizer and generation config, and a
``depthlens.json`` with the method, the removed original block indices, the calibration
data and its size, the library version and the full plan. Written through
:func:`depthlens.io.atomic_dir`: an interruption leaves nothing at the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlens.arch.removed import is_removed
from depthlens.cut.apply import kept_sublayers
from depthlens.cut.plan import CutPlan
from depthlens.errors import DepthlensError
from depthlens.io import atomic_dir, check_output_path
from depthlens.models.loading import LoadedModel, quiet_transformers
from depthlens.models.manifest import MANIFEST, MANIFEST_KIND, PrunedManifest
from depthlens.results import Envelope


def manifest(lm: LoadedModel, plan: CutPlan) -> PrunedManifest:
    """The ``depthlens.json`` content: the cut model's envelope and what was cut."""
    env = Envelope(
        kind=MANIFEST_KIND,
        model=lm.identity(),
        data=plan.data,
        options=plan.options,
        tokens=plan.tokens,
    )
    return PrunedManifest(
        envelope=env,
        method=plan.method,
        removed=list(plan.removed),
        sublayers=kept_sublayers(plan),
        num_layers_original=plan.num_layers,
        num_layers=lm.num_layers,
        base_model=plan.model,
        plan=plan.to_dict(),
    )


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
    if any(is_removed(m) for m in model.modules()):
        raise DepthlensError(
            "this model has skipped sublayers (modules that compute nothing have no weights "
            "to save); save the cut model right after apply_cut_ (zeroed form), before "
            "skip_removed_sublayers_"
        )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with quiet_transformers():  # no "Writing model shards" bar in our output
            model.save_pretrained(tmp, safe_serialization=True)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(tmp)
        gen = getattr(lm.model, "generation_config", None)
        if gen is not None and not (tmp / "generation_config.json").exists():
            gen.save_pretrained(tmp)
        manifest(lm, plan).save(tmp / MANIFEST)
    return out
