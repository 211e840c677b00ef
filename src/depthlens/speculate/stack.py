"""The decoder base of a causal LM, called with explicit positions on a cache we own.

Speculative decoding calls the base model (blocks and final norm, no head) directly: the
draft reads its normed last state through its own head, the verification through the full
head (:mod:`depthlens.speculate.heads`). Positions are passed explicitly because a draft
that skips block 0 would leave cache layer 0, which transformers reads the length from, a
few tokens short. Which caches can be rolled back is :mod:`depthlens.arch.kv`'s business;
:func:`crop_to` rolls every cache layer back to one length, whatever each one holds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from depthlens.arch.kv import cache_kwarg, cache_refusal, kv_layout
from depthlens.arch.spec import ArchSpec
from depthlens.errors import UnsupportedArchitectureError


def speculation_refusal(model: nn.Module, spec: ArchSpec) -> str | None:
    """Why speculative decoding of ``model`` cannot be exact, or None when it can."""
    why = cache_refusal(spec)
    if why is not None:
        return why + "; speculative decoding needs a KV cache it can roll back"
    if not spec.has_lens or spec.final_norm is None:
        return f"the '{spec.family}' family has no final norm and head to read a draft with"
    parent = spec.blocks.rpartition(".")[0]
    if not parent or not spec.final_norm.startswith(parent + "."):
        return (
            f"the '{spec.family}' family keeps its final norm ({spec.final_norm}) outside the "
            f"decoder base ({parent or 'the root'}); speculative decoding needs both in one module"
        )
    try:
        kv_layout(model, spec)
    except UnsupportedArchitectureError as exc:
        return str(exc)
    return None


def new_cache(model: nn.Module) -> Any:
    """A DynamicCache for ``model`` whose sliding-window layers can be rolled back."""
    from transformers import DynamicCache

    config: Any = model.config
    cache = DynamicCache(config=config)
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False) and hasattr(layer, "activate_past_recording"):
            layer.activate_past_recording()  # else a full window cannot drop rejected tokens
    return cache


def crop_to(cache: Any, length: int) -> None:
    """Roll every cache layer back to ``length`` positions (layers a draft skipped are shorter)."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0 or getattr(layer, "record_past", False):
            layer.crop(-max(extra, 0))  # a sliding layer's crop(0) trims it back to its window


class Stack:
    """The base of ``model`` (blocks + final norm) and the cache it decodes with."""

    def __init__(self, model: nn.Module, spec: ArchSpec) -> None:
        why = speculation_refusal(model, spec)
        if why is not None:
            raise UnsupportedArchitectureError(why)
        self.model, self.spec = model, spec
        self.base: Any = model.get_submodule(spec.blocks.rpartition(".")[0])
        self.cache_kw = cache_kwarg(self.base)
        self.device = next(model.parameters()).device
        self.cache: Any = None

    def reset(self) -> None:
        """A fresh, empty cache."""
        self.cache = new_cache(self.model)

    def length(self) -> int:
        """Positions the cache holds in every layer the full model runs (layer 0's count)."""
        return int(self.cache.get_seq_length()) if self.cache is not None else 0

    def forward(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """(1, q) token ids at positions start.. -> (1, q, d) normed last hidden states."""
        q = ids.shape[1]
        pos = torch.arange(start, start + q, device=self.device).unsqueeze(0)
        out = self.base(
            input_ids=ids.to(self.device),
            position_ids=pos,
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def mask_reference_refusal(model: nn.Module, spec: ArchSpec, run: tuple[int, ...]) -> str | None:
    """Why a draft running blocks ``run`` cannot share the cache, or None.

    transformers sizes each kind of attention mask (full, sliding) from the first cache
    layer of that kind. A draft that leaves that block out while it runs others of its kind
    would let that layer fall behind and get masks of the wrong length.
    """
    layout = kv_layout(model, spec)
    kind_of = {b: layout.layer_types[c] for b, c in enumerate(layout.cache_layers)}
    for kind in dict.fromkeys(kind_of.values()):
        ref = min(b for b, t in kind_of.items() if t == kind)
        users = [b for b in run if kind_of[b] == kind]
        if users and ref not in run:
            return (
                f"the draft leaves out block {ref}, the first {kind} block, whose cache layer "
                f"transformers sizes every {kind} mask from, but runs {kind} blocks {users}; "
                f"keep block {ref} in the draft"
            )
    return None
