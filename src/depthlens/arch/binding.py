"""Binding a family's spec to a loaded model: its wiring resolved from the config.

A model whose config sets a wiring attribute the family does not read, or whose blocks
carry a post-sublayer norm a pre-norm family does not expect, is refused; so is cutting a
model whose blocks depend on the depth or on their own index.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from depthlens.arch.families import FAMILIES
from depthlens.arch.layout import ArchSpec, blocks_of
from depthlens.arch.wiring import (
    WIRING_CONFIG_KEYS,
    Wiring,
    config_float,
    is_neutral,
    model_configs,
)
from depthlens.errors import UnsupportedArchitectureError

#: Block children that mean "this sublayer's output is normalised before the add".
_POST_SUBLAYER_NORMS = ("post_feedforward_layernorm", "post_mlp_layernorm", "post_ffw_norm")


def _refuse_unexplained(model: nn.Module, spec: ArchSpec, cfg: Any, text: Any) -> None:
    """Refuse a model whose wiring the spec cannot describe (it would give wrong numbers)."""
    for key in WIRING_CONFIG_KEYS:
        if key in spec.wiring_keys:
            continue
        for c in (text, cfg):
            value = getattr(c, key, None)
            if not is_neutral(key, value):
                readers = [f.family for f in FAMILIES.values() if key in f.wiring_keys]
                raise UnsupportedArchitectureError(
                    f"the model's config sets {key} = {value!r}, which the '{spec.family}' "
                    "layout does not account for (it changes what each block adds or what "
                    "the head outputs), so every number would be wrong; "
                    + (
                        f"pass --arch {' or '.join(readers)} if the layout matches"
                        if readers
                        else "no depthlens family supports it"
                    )
                )
    if spec.norm == "pre":
        children = dict(blocks_of(model, spec)[0].named_children())
        found = [n for n in _POST_SUBLAYER_NORMS if n in children]
        if found:
            raise UnsupportedArchitectureError(
                f"the model's blocks have a post-sublayer norm ('{found[0]}'), but the "
                f"'{spec.family}' layout is pre-norm: what a sublayer adds would be misread; "
                "pass --arch gemma2 or --arch olmo2 if the layout matches"
            )


def wire(model: nn.Module, spec: ArchSpec) -> ArchSpec:
    """``spec`` with its :class:`Wiring` resolved from ``model``'s configs."""
    cfg, text = model_configs(model)
    _refuse_unexplained(model, spec, cfg, text)
    parallel = spec.parallel
    if spec.parallel_key is not None:
        parallel = bool(getattr(text, spec.parallel_key, parallel))
    mult = config_float(text, spec.multiplier_key)
    scale = config_float(cfg, spec.logit_scale_key)
    wiring = Wiring(
        norm=spec.norm,
        parallel=parallel,
        branch_multiplier=1.0 if mult is None else mult,
        logit_scale=1.0 if scale is None else scale,
        logit_softcap=config_float(cfg, spec.softcap_key),
    )
    return dataclasses.replace(spec, resolved=wiring)


def cut_refusal(model: nn.Module, spec: ArchSpec) -> str | None:
    """Why removing blocks from ``model`` cannot be exact, or None when it can."""
    _, text = model_configs(model)
    for key, values in spec.depth_dependent:
        value = getattr(text, key, None)
        if value in values:
            return (
                f"the model's config sets {key} = {value!r}, which makes each block depend on "
                "the model's depth or the block's index; a cut model rebuilt from its config "
                "would compute something else, so cutting it is not supported"
            )
    return None
