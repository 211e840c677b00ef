"""Removed sublayers: an attention or MLP sublayer that adds nothing, in two forms.

- **Zeroed** (:func:`zero_sublayer_`): the sublayer's output projection (the last of its
  linears in the spec) gets weight and bias 0, so what it adds to the stream is exactly 0
  in every wiring that adds a projection's output (pre-norm, sandwich norms, whose RMSNorm of
  0 is 0, Granite's multiplier, parallel blocks). The module tree is unchanged, so plain
  transformers loads the checkpoint, but it still spends the sublayer's compute.
- **Skipped** (:func:`skip_sublayer_`): the sublayer's module is swapped for
  :class:`RemovedAttention` / :class:`RemovedMLP`, which return zeros without computing
  anything (the block's norm still runs). A removed attention keeps the KV cache's
  bookkeeping: it appends a (batch, 1, tokens, 1) slice of zeros to its cache layer, so the
  cache's sequence length (read from layer 0 when positions are computed) stays right
  while the cache holds one number per token instead of ``2 × kv_heads × head_dim``.

Post-norm families (BERT, the lab models) have no module whose output is what a sublayer
adds: :func:`sublayer_refusal` names why.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from depthlens.arch.layout import ArchSpec

Part = Literal["attn", "mlp"]
PARTS: tuple[Part, ...] = ("attn", "mlp")


def sublayer_refusal(spec: ArchSpec) -> str | None:
    """Why family ``spec`` cannot lose a single sublayer, or None when it can."""
    if spec.wiring.norm == "post":
        return (
            f"family '{spec.family}' is post-norm: its sublayer modules output the whole "
            "stream, so no sublayer can be removed alone; cut whole blocks instead"
        )
    if spec.attn_module is None or spec.mlp_module is None or not spec.attn_linears:
        return (
            f"family '{spec.family}' does not name its attention/MLP modules and linears "
            "in its ArchSpec; cut whole blocks instead"
        )
    return None


def module_path(spec: ArchSpec, part: Part) -> str:
    """The path, from a block, of the module that computes sublayer ``part``."""
    path = spec.attn_module if part == "attn" else spec.mlp_module
    if path is None:
        raise ValueError(f"family '{spec.family}' names no {part} module")
    return path


def out_projection_path(spec: ArchSpec, part: Part) -> str:
    """The path, from a block, of the linear whose output is what sublayer ``part`` adds."""
    linears = spec.attn_linears if part == "attn" else spec.mlp_linears
    if not linears:
        raise ValueError(f"family '{spec.family}' names no {part} linears")
    return linears[-1]


class RemovedAttention(nn.Module):
    """An attention sublayer that adds nothing; it keeps the KV cache's length right."""

    def __init__(self, cache_index_attr: str | None, layer_idx: int | None) -> None:
        super().__init__()
        self.cache_index_attr = cache_index_attr
        if cache_index_attr is not None:
            # a plain attribute: remove_blocks_ renumbers it with the other layer indices
            self.__dict__[cache_index_attr] = layer_idx

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """(zeros like the hidden states, no attention weights)."""
        h = kwargs.get("hidden_states", args[0] if args else None)
        if not isinstance(h, torch.Tensor):
            raise TypeError("RemovedAttention: no hidden_states tensor in the call")
        self._keep_cache_length(h, kwargs)
        return torch.zeros_like(h), None

    def _keep_cache_length(self, h: torch.Tensor, kwargs: dict[str, Any]) -> None:
        from transformers.cache_utils import Cache

        cache = next((v for v in kwargs.values() if isinstance(v, Cache)), None)
        if cache is None or self.cache_index_attr is None:
            return
        stub = h.new_zeros(h.shape[0], 1, h.shape[1], 1)  # (B, 1, T, 1)
        cache.update(stub, stub, int(getattr(self, self.cache_index_attr)))


class RemovedMLP(nn.Module):
    """An MLP sublayer that adds nothing."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Zeros like the input."""
        return torch.zeros_like(x)


def is_removed(module: nn.Module) -> bool:
    """Whether ``module`` is a skipped sublayer."""
    return isinstance(module, RemovedAttention | RemovedMLP)


@torch.no_grad()
def zero_sublayer_(block: nn.Module, spec: ArchSpec, part: Part) -> None:
    """Make sublayer ``part`` of ``block`` add exactly 0 (same modules, zeroed projection)."""
    proj = block.get_submodule(out_projection_path(spec, part))
    for name in ("weight", "bias"):
        p = getattr(proj, name, None)
        if isinstance(p, torch.Tensor):
            p.zero_()


def skip_sublayer_(block: nn.Module, spec: ArchSpec, part: Part) -> None:
    """Swap sublayer ``part`` of ``block`` for a module that computes nothing."""
    path = module_path(spec, part)
    parent_path, _, name = path.rpartition(".")
    parent = block.get_submodule(parent_path) if parent_path else block
    old = getattr(parent, name)
    if is_removed(old):
        return
    if part == "mlp":
        new: nn.Module = RemovedMLP()
    else:
        attr = spec.cache_index_attr
        idx = getattr(old, attr, None) if attr is not None else None
        new = RemovedAttention(attr, idx)
    setattr(parent, name, new)


def sublayer_is_skipped(block: nn.Module, spec: ArchSpec, part: Part) -> bool:
    """Whether sublayer ``part`` of ``block`` was swapped out by :func:`skip_sublayer_`."""
    path = spec.attn_module if part == "attn" else spec.mlp_module
    return path is not None and is_removed(block.get_submodule(path))
