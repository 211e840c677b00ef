"""Turn a parsed ``--draft`` into a drafter on a loaded model (the checks that need it).

The views here are the behaviour of the self-draft records of
:data:`depthlens.speculate.kinds.DRAFT_KINDS`; a cut checkpoint is a :func:`model_draft`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from depthlens.arch.spec import blocks_of, get_submodule
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel
from depthlens.speculate.drafters import ModelDraft, SelfDraft
from depthlens.speculate.heads import DraftHead, FullHead, ReducedHead
from depthlens.speculate.spec import DraftSpec
from depthlens.speculate.stack import Stack, mask_reference_refusal
from depthlens.speculate.view import DepthView


def draft_head(lm: LoadedModel, vocab_ids: torch.Tensor | None) -> DraftHead:
    """The model's full head, or only the rows ``vocab_ids`` (FR-Spec)."""
    full = FullHead(lm.model, lm.arch)
    return full if vocab_ids is None else ReducedHead(full, vocab_ids)


def skip_view(lm: LoadedModel, spec: DraftSpec) -> DepthView:
    """Every block but the skipped ones."""
    gone = set(spec.skip)
    return DepthView(lm.model, lm.arch, tuple(i for i in range(lm.num_layers) if i not in gone))


def plan_view(lm: LoadedModel, spec: DraftSpec) -> DepthView:
    """The blocks a saved plan keeps, with its linear maps as draft-only MLP hooks."""
    from depthlens.cut import load_plan
    from depthlens.results import check_same_model

    plan = load_plan(str(spec.path))
    if plan.num_layers != lm.num_layers:
        raise DepthlensError(
            f"--draft {spec.text!r}: the plan is for a {plan.num_layers}-block model but "
            f"this one has {lm.num_layers}; plan on this model"
        )
    if plan.envelope.model.get("config") is not None:
        check_same_model(plan.envelope.model, lm.identity(), "the plan and this model")
    view = DepthView(lm.model, lm.arch, plan.kept)
    blocks = blocks_of(lm.model, lm.arch)
    dtype = next(lm.model.parameters()).dtype
    for i, t in plan.maps().items():
        # ReplaceMe merges T into the MLP output projection; as a hook: MLP output @ T.
        view.on_draft_output(blocks[i].get_submodule(lm.arch.mlp), _times(t.to(lm.device, dtype)))
    return view


def _times(t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map y -> y @ t."""
    return lambda y: y @ t


def exit_view(lm: LoadedModel, spec: DraftSpec) -> DepthView:
    """The first E blocks; with a tuned lens, its translator before the final norm."""
    e = int(spec.exit_at or 0)
    view = DepthView(lm.model, lm.arch, tuple(range(e)))
    if spec.path:
        from depthlens.tuned.lens import load_lens

        lens, _meta = load_lens(spec.path, lm)
        lens.eval()
        norm = get_submodule(lm.model, str(lm.arch.final_norm))

        def translate(h: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return lens.translate(h, e)

        view.on_draft_input(norm, translate)
    return view


def self_draft(
    lm: LoadedModel,
    stack: Stack,
    view: DepthView,
    spec: DraftSpec,
    temperature: float,
    vocab_ids: Any,
) -> SelfDraft:
    """A draft that runs ``view`` of ``lm`` on ``stack``'s model and cache."""
    why = mask_reference_refusal(lm.model, lm.arch, view.run)
    if why is not None:
        view.close()
        raise DepthlensError(f"--draft {spec.text!r}: {why}")
    return SelfDraft(stack, view, draft_head(lm, vocab_ids), temperature)


def check_cut_of(draft: LoadedModel, lm: LoadedModel, spec: DraftSpec) -> None:
    """Refuse a cut checkpoint that was not cut from ``lm`` or reads another vocabulary."""
    from depthlens.models.manifest import read_manifest
    from depthlens.results import model_fingerprint

    base = (read_manifest(spec.path) or {}).get("base_model") or {}
    if not base:
        raise DepthlensError(
            f"--draft {spec.text!r}: {spec.path} has no depthlens.json naming the model it was "
            "cut from; pass a checkpoint written by `depthlens prune`"
        )
    want, got = model_fingerprint(base), lm.identity()["fingerprint"]
    if want != got:
        raise DepthlensError(
            f"--draft {spec.text!r} was cut from {base.get('ref')!r} (fingerprint {want}), not "
            f"from {lm.ref!r} ({got}); a draft must be a cut of the model it speeds up"
        )
    vd, vm = FullHead(draft.model, draft.arch).vocab, FullHead(lm.model, lm.arch).vocab
    if vd != vm:
        raise DepthlensError(
            f"--draft {spec.text!r} reads {vd} tokens but {lm.ref!r} reads {vm}; use a draft "
            "with the same tokenizer"
        )


def model_draft(
    lm: LoadedModel, draft: LoadedModel, spec: DraftSpec, temperature: float, vocab_ids: Any
) -> ModelDraft:
    """A cut checkpoint as a separate draft with its own cache."""
    check_cut_of(draft, lm, spec)
    return ModelDraft(Stack(draft.model, draft.arch), draft_head(draft, vocab_ids), temperature)
