"""The :class:`ArchSpec` record: where the parts of one architecture family live.

Dotted paths (relative to the loaded model, or to one block) to the modules depthlens hooks
or edits, the sublayers' real modules and norms, their linear layers and the KV-cache index,
and the names of the config attributes that hold the rest of the wiring. The table of
families is :data:`depthlens.arch.families.FAMILIES`; :func:`depthlens.arch.spec.resolve_arch`
finds a loaded model's spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from depthlens.arch.wiring import NormPlacement, Wiring
from depthlens.errors import UnsupportedArchitectureError

#: "add": the module's output (first element if a tuple) is exactly what the sublayer adds
#: to the residual stream. "stream": the module's output *is* the stream after the sublayer
#: (post-norm blocks such as BERT), so what it adds is that output minus the stream entering
#: the sublayer (h_l for attention, h_l + a_l for the MLP; not necessarily the module's
#: first argument: BertOutput is called as ``output(intermediate, attention_output)``).
SublayerMode = Literal["add", "stream"]


@dataclass(frozen=True)
class ArchSpec:
    """Where the parts of one architecture family live."""

    family: str
    model_types: tuple[str, ...]
    blocks: str  # ModuleList of blocks, from the model root
    attn: str  # from a block: module whose output gives a_l (see SublayerMode)
    mlp: str  # from a block: module whose output gives m_l
    mlp_out_proj: str | None  # from a block: MLP output projection (ReplaceMe merges T here)
    final_norm: str | None  # from the model root; None = no logit lens
    unembed: str | None  # from the model root
    attn_mode: SublayerMode = "add"
    mlp_mode: SublayerMode = "add"
    causal: bool = True
    # Config attributes that hold one entry per layer and must be sliced when cutting.
    per_layer_config: tuple[str, ...] = ("layer_types",)
    # (config key, values) that make a block depend on the depth L or on its own index, which
    # a cut changes when the model is rebuilt from its config: cutting is refused.
    depth_dependent: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    notes: str = ""
    # The sublayers' real modules, from a block, as the block calls them: ``attn_module``
    # mixes positions (and owns the block's KV-cache layer) and is called on
    # ``attn_norm(h)``; ``mlp_module`` is called on ``mlp_norm(...)`` (of h_l + a_l, or of
    # h_l when parallel). A norm of None: the module reads the stream unnormalised (OLMo 2,
    # post-norm families). A module of None: no single module is that sublayer (BERT's MLP
    # is split over two), or the generic fallback could not find its input norm.
    attn_module: str | None = None
    attn_norm: str | None = None
    mlp_module: str | None = None
    mlp_norm: str | None = None
    # The linear layers (nn.Linear, or GPT-2's Conv1D) of each sublayer, from a block: the
    # LoRA targets when healing. Empty: not known, so healing with LoRA is refused.
    attn_linears: tuple[str, ...] = ()
    mlp_linears: tuple[str, ...] = ()
    # KV cache: the attribute of ``attn_module`` holding the index of the cache layer it
    # reads and writes (a cut renumbers it). None: the family keeps no KV cache (encoders,
    # the lab model); see depthlens.arch.kv for the per-layer layout of a loaded model.
    cache_index_attr: str | None = None
    # Wiring (see depthlens.arch.wiring): fixed facts, and the config attributes that hold
    # the rest. Branch values come from the text config (the blocks read it); logit values
    # from the model's own config (the head that applies them reads it: Gemma 3's
    # multimodal wrapper ignores its text config's soft-cap).
    norm: NormPlacement = "pre"
    parallel: bool = False  # attention and MLP both read h_l
    parallel_key: str | None = None  # text-config bool that decides `parallel` (GPT-NeoX)
    multiplier_key: str | None = None  # text-config float scaling each branch (Granite)
    logit_scale_key: str | None = None  # config float dividing the logits (Granite)
    softcap_key: str | None = None  # config float soft-capping the logits (Gemma 2/3)
    resolved: Wiring | None = None  # the values, filled in by resolve_arch

    def __post_init__(self) -> None:
        stream = (self.attn_mode, self.mlp_mode) == ("stream", "stream")
        if stream != (self.norm == "post"):
            raise ValueError(f"family '{self.family}': post-norm iff both sublayers 'stream'")

    @property
    def wiring(self) -> Wiring:
        """The resolved wiring (only on a spec returned by :func:`resolve_arch`)."""
        if self.resolved is None:
            raise RuntimeError(
                f"the '{self.family}' spec is not resolved against a model; use resolve_arch"
            )
        return self.resolved

    @property
    def wiring_keys(self) -> tuple[str, ...]:
        """The config attributes this spec reads."""
        keys = (self.parallel_key, self.multiplier_key, self.logit_scale_key, self.softcap_key)
        return tuple(k for k in keys if k is not None)

    @property
    def lora_targets(self) -> tuple[str, ...]:
        """Every linear of a block that LoRA adapts (attention first), from the block."""
        return self.attn_linears + self.mlp_linears

    @property
    def has_lens(self) -> bool:
        """Whether the logit lens is defined (a causal LM with a final norm and head)."""
        return self.causal and self.unembed is not None

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form, written into every output for traceability."""
        d = dataclasses.asdict(self)
        d["wiring"] = d.pop("resolved")  # the values this model was read with
        return {k: _json_lists(v) for k, v in d.items()}


def _json_lists(v: object) -> object:
    """Tuples as lists (recursively), so the dict equals its own JSON read back."""
    if isinstance(v, dict):
        return {k: _json_lists(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_lists(x) for x in v]
    return v


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted path, accepting both ``bert.encoder`` and ``encoder`` roots."""
    return root.get_submodule(path)


def blocks_of(model: nn.Module, spec: ArchSpec) -> nn.ModuleList:
    """The model's block list."""
    blocks = get_submodule(model, spec.blocks)
    if not isinstance(blocks, nn.ModuleList):
        raise UnsupportedArchitectureError(f"'{spec.blocks}' is not a ModuleList of blocks")
    return blocks
