"""Architectures described as data, and finding the one of a loaded model.

Each family is one :class:`ArchSpec` (:mod:`depthlens.arch.layout`) in the table
:data:`FAMILIES` (:mod:`depthlens.arch.families`). Models whose ``model_type`` is not in the
table go through :func:`generic_spec`, which finds the block ``ModuleList`` itself. The
wiring (norm placement, parallel sublayers, branch multiplier, logit scale and soft-cap) is
declared per family and resolved from the model's config by :func:`resolve_arch`; a model
whose config sets a wiring attribute its family does not read is refused, never approximated.
This module is the package's front: the others sit below it and never import it.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from depthlens.arch.binding import cut_refusal, wire
from depthlens.arch.families import FAMILIES, is_causal_lm, model_type_index
from depthlens.arch.generic import find_generic_spec
from depthlens.arch.layout import ArchSpec, SublayerMode, blocks_of, get_submodule
from depthlens.errors import UnsupportedArchitectureError

__all__ = [
    "FAMILIES",
    "ArchSpec",
    "SublayerMode",
    "blocks_of",
    "cut_refusal",
    "generic_spec",
    "get_submodule",
    "is_causal_lm",
    "resolve_arch",
    "wire",
]


def _base_prefix(model: nn.Module, spec: ArchSpec) -> ArchSpec:
    """Adapt a spec whose paths start at the LM wrapper to a bare base model or vice versa."""
    try:
        get_submodule(model, spec.blocks)
        return spec
    except AttributeError:
        pass
    # A bare base model (e.g. BertModel, LlamaModel) lacks the "model." prefix.
    head, _, rest = spec.blocks.partition(".")
    if rest:
        try:
            get_submodule(model, rest)

            def strip(p: str | None) -> str | None:
                return p[len(head) + 1 :] if p and p.startswith(head + ".") else p

            return dataclasses.replace(
                spec, blocks=rest, final_norm=strip(spec.final_norm), unembed=None
            )
        except AttributeError:
            pass
    # A BertForX wrapper adds a "bert." prefix.
    for name, _ in model.named_children():
        try:
            get_submodule(model, f"{name}.{spec.blocks}")
            return dataclasses.replace(spec, blocks=f"{name}.{spec.blocks}")
        except AttributeError:
            continue
    nested = _nested_text_model(model, spec)
    if nested is not None:
        return nested
    raise UnsupportedArchitectureError(
        f"the model's modules do not match the '{spec.family}' layout (no '{spec.blocks}'); "
        "pass --arch generic or another family from `depthlens models`"
    )


def _resolves(model: nn.Module, path: str) -> bool:
    try:
        get_submodule(model, path)
        return True
    except AttributeError:
        return False


def _nested_text_model(model: nn.Module, spec: ArchSpec) -> ArchSpec | None:
    """Find the text model nested deeper in a multimodal wrapper, or None.

    Gemma3ForConditionalGeneration (model_type "gemma3") keeps its blocks at
    ``model.language_model.layers`` and its norm at ``model.language_model.norm``, with the
    head at the root. The final norm must resolve under the same prefix, so a vision
    encoder's ``layers`` is not mistaken for the text blocks.
    """
    root, _, rest = spec.blocks.partition(".")
    if not rest or spec.final_norm is None or not spec.final_norm.startswith(root + "."):
        return None
    norm = spec.final_norm[len(root) + 1 :]
    for name, _ in model.named_modules():
        if name and _resolves(model, f"{name}.{rest}") and _resolves(model, f"{name}.{norm}"):
            unembed = spec.unembed if spec.unembed and _resolves(model, spec.unembed) else None
            return dataclasses.replace(
                spec, blocks=f"{name}.{rest}", final_norm=f"{name}.{norm}", unembed=unembed
            )
    return None


def resolve_arch(model: nn.Module, family: str | None = None) -> ArchSpec:
    """Find the :class:`ArchSpec` for ``model`` (by ``config.model_type``, or ``family``)."""
    if family is not None and family != "generic":
        if family not in FAMILIES:
            raise UnsupportedArchitectureError(
                f"unknown --arch '{family}'; choose one of: {', '.join(sorted(FAMILIES))}, generic"
            )
        return wire(model, _base_prefix(model, FAMILIES[family]))
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    spec = model_type_index().get(str(model_type)) if family is None else None
    if spec is not None:
        return wire(model, _base_prefix(model, spec))
    return generic_spec(model)


def generic_spec(model: nn.Module) -> ArchSpec:
    """The generic fallback's spec for ``model`` (see :mod:`depthlens.arch.generic`)."""
    return find_generic_spec(model)
