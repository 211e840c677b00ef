"""Apply a plan in place: merge T, remove blocks, fix the config and the layer indices."""

from __future__ import annotations

from typing import Any

from torch import nn

from depthlens.arch.removed import skip_sublayer_, sublayer_refusal, zero_sublayer_
from depthlens.arch.spec import blocks_of, cut_refusal
from depthlens.cut.plan import CutPlan
from depthlens.cut.replace import merge_transform_
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel
from depthlens.results import check_same_model


def _configs(model: nn.Module) -> list[Any]:
    """Every distinct config object the model and its submodules hold."""
    seen: dict[int, Any] = {}
    cfg = getattr(model, "config", None)
    if cfg is not None:
        seen[id(cfg)] = cfg
        text = cfg.get_text_config()
        seen[id(text)] = text
    for mod in model.modules():
        c = getattr(mod, "config", None)
        if c is not None and hasattr(c, "to_dict"):
            seen.setdefault(id(c), c)
    return list(seen.values())


def remove_blocks_(lm: LoadedModel, removed: tuple[int, ...]) -> None:
    """Delete blocks ``removed`` (original indices) from ``lm.model`` in place.

    Sets ``num_hidden_layers`` (GPT-2's ``n_layer`` through its attribute map), slices the
    per-layer config lists named by the arch spec (e.g. Gemma 3's ``layer_types``) and
    renumbers every ``layer_idx`` so the KV cache indexes the kept blocks.
    """
    model: Any = lm.model
    spec = lm.arch
    blocks = blocks_of(model, spec)
    n_layers = len(blocks)
    gone = set(removed)
    if not gone or not gone <= set(range(n_layers)) or len(gone) >= n_layers:
        raise DepthlensError(f"cannot remove blocks {sorted(gone)} of a {n_layers}-block model")
    refusal = cut_refusal(model, spec)
    if refusal is not None:
        raise DepthlensError(refusal)
    kept = [i for i in range(n_layers) if i not in gone]
    parent_path, _, name = spec.blocks.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, nn.ModuleList([blocks[i] for i in kept]))
    for new, block in enumerate(blocks_of(model, spec)):
        for mod in block.modules():
            if hasattr(mod, "layer_idx"):
                mod.__dict__["layer_idx"] = new  # a plain attribute, not a submodule
    for c in _configs(model):
        if getattr(c, "num_hidden_layers", None) == n_layers:
            c.num_hidden_layers = len(kept)
        for key in spec.per_layer_config:
            vals = getattr(c, key, None)
            if isinstance(vals, list | tuple) and len(vals) == n_layers:
                setattr(c, key, type(vals)(vals[i] for i in kept))


def apply_cut_(lm: LoadedModel, plan: CutPlan) -> None:
    """Apply ``plan`` to ``lm`` in place: merge T (ReplaceMe) into block s−1, then remove."""
    if lm.num_layers != plan.num_layers:
        raise DepthlensError(
            f"the plan is for a {plan.num_layers}-block model but this one has "
            f"{lm.num_layers}; plan again on this model"
        )
    planned_on = plan.envelope.model
    if planned_on.get("config") is not None and planned_on.get("n_params") is not None:
        # Same depth is not the same model: a plan's T belongs to the weights it was fit on.
        check_same_model(planned_on, lm.identity(), "the plan and this model")
    if plan.merge_into is None and not plan.merges and plan.fit.get("runs"):
        raise DepthlensError(
            "this multi-run plan has no maps T; read a saved plan with "
            "load_plan (its .T.safetensors beside the JSON) or plan again"
        )
    if plan.merge_into is not None:
        if plan.transform is None:
            raise DepthlensError(
                "this ReplaceMe plan has no matrix T; read a saved plan "
                "with load_plan (its .T.safetensors beside the JSON) or "
                "plan again"
            )
        if lm.arch.mlp_out_proj is None:
            raise DepthlensError(f"family '{lm.arch.family}' has no MLP output projection")
        block = blocks_of(lm.model, lm.arch)[plan.merge_into]
        merge_transform_(block.get_submodule(lm.arch.mlp_out_proj), plan.transform)
    for i, t in plan.merges:
        if lm.arch.mlp_out_proj is None:
            raise DepthlensError(f"family '{lm.arch.family}' has no MLP output projection")
        block = blocks_of(lm.model, lm.arch)[i]
        merge_transform_(block.get_submodule(lm.arch.mlp_out_proj), t)
    zero_sublayers_(lm, plan.sublayers)
    if plan.removed or not plan.sublayers:  # an empty plan is still refused there
        remove_blocks_(lm, plan.removed)
    lm.extra["depthlens_cut"] = {
        "method": plan.method,
        "removed": list(plan.removed),
        **({"sublayers": kept_sublayers(plan)} if plan.sublayers else {}),
        "num_layers_original": plan.num_layers,
        "base_fingerprint": plan.model.get("fingerprint"),
    }


def zero_sublayers_(lm: LoadedModel, sublayers: tuple[tuple[str, int], ...]) -> None:
    """Zero the output projection of each (part, block) sublayer (original indices).

    The plain-transformers form of a sublayer cut (:mod:`depthlens.arch.removed`): exact,
    loadable by any loader of the family, but computing what it did; load the saved
    checkpoint with depthlens (or call ``skip_removed_sublayers_``) to skip them.
    """
    if not sublayers:
        return
    refusal = sublayer_refusal(lm.arch)
    if refusal is not None:
        raise DepthlensError(refusal)
    blocks = blocks_of(lm.model, lm.arch)
    for part, i in sublayers:
        if part not in ("attn", "mlp") or not 0 <= i < len(blocks):
            raise DepthlensError(f"sublayer {part}:{i} is not in a {len(blocks)}-block model")
        zero_sublayer_(blocks[i], lm.arch, "attn" if part == "attn" else "mlp")


def kept_sublayers(plan: CutPlan) -> list[str]:
    """The plan's removed sublayers as "attn:I" with I the block's index after the cut."""
    kept = plan.kept
    return [f"{k}:{kept.index(i)}" for k, i in plan.sublayers]


def _cut_sublayers(lm: LoadedModel) -> list[tuple[nn.Module, Any]]:
    """(block, part) of each sublayer ``apply_cut_`` removed, by the cut model's indices."""
    subs = list(lm.extra.get("depthlens_cut", {}).get("sublayers") or [])
    blocks = blocks_of(lm.model, lm.arch)
    out = []
    for text in subs:
        part, _, idx = text.partition(":")
        out.append((blocks[int(idx)], "attn" if part == "attn" else "mlp"))
    return out


def rezero_removed_sublayers_(lm: LoadedModel) -> None:
    """Zero again the sublayers of the cut (after training that may have touched them)."""
    for block, part in _cut_sublayers(lm):
        zero_sublayer_(block, lm.arch, part)


def skip_removed_sublayers_(lm: LoadedModel) -> list[str]:
    """Swap the sublayers ``apply_cut_`` zeroed for modules that compute nothing (speed).

    The model then computes exactly what it did, faster, but can no longer be saved as a
    plain checkpoint (save first). Returns the skipped units ("attn:I", cut indices).
    """
    for block, part in _cut_sublayers(lm):
        skip_sublayer_(block, lm.arch, part)
    return list(lm.extra.get("depthlens_cut", {}).get("sublayers") or [])
