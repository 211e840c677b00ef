"""Where a loaded model keeps its KV cache: which cache layer each block writes, and its kind.

transformers builds one cache layer per entry of the text config's ``layer_types``, through
``get_layer_types_and_kwargs`` (the call ``DynamicCache(config=...)`` makes; it is read
here rather than re-derived). A full-attention layer keeps every position; a sliding-window
layer keeps only the last ``window`` positions, so once it is full, rejected draft tokens
cannot be removed from it with ``DynamicCache.crop`` unless the layer records its past
(``activate_past_recording``). Each block's attention module names its own cache layer
(``ArchSpec.cache_index_attr``, renumbered by a cut), which is what code that shares one
cache between a model and a view of it with blocks skipped must follow.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from depthlens.arch.layout import ArchSpec, blocks_of
from depthlens.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class KvLayout:
    """The KV-cache layout of one loaded model."""

    cache_layers: tuple[int, ...]  # per block, in order: the cache layer its attention writes
    layer_types: tuple[str, ...]  # per cache layer: "full_attention", "sliding_attention", …
    windows: tuple[int | None, ...]  # per cache layer: positions kept, None = all of them

    @property
    def sliding_blocks(self) -> tuple[int, ...]:
        """The blocks whose cache layer keeps a sliding window only."""
        return tuple(b for b, c in enumerate(self.cache_layers) if self.windows[c] is not None)

    @property
    def croppable(self) -> bool:
        """Whether ``DynamicCache.crop`` can roll back any number of tokens at any length."""
        return all(w is None for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


def cache_refusal(spec: ArchSpec) -> str | None:
    """Why the family of ``spec`` has no KV cache to decode with, or None when it has one."""
    if not spec.causal:
        return f"the '{spec.family}' family is an encoder: it keeps no KV cache"
    if spec.cache_index_attr is None:
        return (
            f"the '{spec.family}' family keeps no KV cache (its attention recomputes the "
            "whole sequence at every step)"
        )
    return None


def cache_kwarg(model: nn.Module) -> str:
    """The forward keyword taking the cache: ``cache`` (transformers 5.x) or ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _text_config(model: nn.Module) -> Any:
    cfg = getattr(model, "config", None)
    get_text = getattr(cfg, "get_text_config", None)
    return get_text(decoder=True) if callable(get_text) else cfg


def kv_layout(model: nn.Module, spec: ArchSpec) -> KvLayout:
    """The :class:`KvLayout` of ``model``; refuses a family that keeps no KV cache."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    why, attr = cache_refusal(spec), spec.cache_index_attr
    if why is not None or attr is None:
        raise UnsupportedArchitectureError(why or "no cache index attribute")
    owner = spec.attn_module or spec.attn  # the generic fallback may not know the norm
    cache_layers = tuple(
        int(getattr(block.get_submodule(owner), attr)) for block in blocks_of(model, spec)
    )
    types, kwargs = get_layer_types_and_kwargs(_text_config(model))
    windows = tuple(kw.get("sliding_window") for kw in kwargs)
    if len(set(cache_layers)) != len(cache_layers) or max(cache_layers) >= len(types):
        raise UnsupportedArchitectureError(
            f"the blocks' cache indices {list(cache_layers)} do not match the config's "
            f"{len(types)} cache layers; the checkpoint's config and modules disagree"
        )
    return KvLayout(cache_layers, tuple(types), windows)
