"""The generic fallback: find the blocks of a model whose type is in no family table entry.

It assumes pre-norm, sequential, unscaled wiring, and :func:`~depthlens.arch.binding.wire`
refuses a model whose config or blocks say otherwise (post-sublayer norms, a branch
multiplier, a logit scale or soft-cap, parallel blocks).
"""

from __future__ import annotations

from torch import nn
from transformers.pytorch_utils import Conv1D

from depthlens.arch.binding import wire
from depthlens.arch.families import FAMILIES
from depthlens.arch.layout import ArchSpec, get_submodule
from depthlens.errors import UnsupportedArchitectureError

_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "ff")
_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "final_norm")
# A block's input norms, by the names the common layouts give them.
_ATTN_NORM_NAMES = ("input_layernorm", "ln_1", "attention_norm", "attn_norm", "ln_attn")
_MLP_NORM_NAMES = ("post_attention_layernorm", "ln_2", "ffn_norm", "mlp_norm", "ln_mlp")


def _linears(block: nn.Module, child: str) -> tuple[str, ...]:
    """Dotted names (from the block) of the Linear / Conv1D layers under ``child``."""
    sub = block.get_submodule(child)
    return tuple(
        f"{child}.{n}" for n, m in sub.named_modules() if n and isinstance(m, nn.Linear | Conv1D)
    )


def _sublayer_fields(block: nn.Module, attn: str, mlp: str) -> dict[str, object]:
    """The ArchSpec fields naming the sublayers' modules, norms, linears and cache index.

    A module whose input norm is not found by name is left None (its input is not known:
    what needs it, such as filling the KV cache from a norm's output, is refused).
    """
    children = dict(block.named_children())
    attn_norm = next((n for n in _ATTN_NORM_NAMES if n in children), None)
    mlp_norm = next((n for n in _MLP_NORM_NAMES if n in children), None)
    has_index = hasattr(block.get_submodule(attn), "layer_idx")
    return dict(
        attn_module=attn if attn_norm else None,
        attn_norm=attn_norm,
        mlp_module=mlp if mlp_norm else None,
        mlp_norm=mlp_norm,
        attn_linears=_linears(block, attn),
        mlp_linears=_linears(block, mlp),
        cache_index_attr="layer_idx" if has_index else None,
    )


def _largest_block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2:
            kinds = {type(child) for child in mod}
            if len(kinds) == 1 and (best is None or len(mod) > len(best[1])):
                best = (name, mod)
    return best


def find_generic_spec(model: nn.Module) -> ArchSpec:
    """Fallback for unknown pre-norm models: find the blocks and name their sublayers."""
    model_type = getattr(getattr(model, "config", None), "model_type", "unknown")
    found = _largest_block_list(model)
    hint = (
        f"unsupported architecture '{model_type}': {{why}}; pass --arch FAMILY with one of "
        f"{', '.join(sorted(FAMILIES))} if its layout matches (see `depthlens models`)"
    )
    if found is None:
        raise UnsupportedArchitectureError(hint.format(why="no ModuleList of identical blocks"))
    blocks_path, blocks = found
    children = dict(blocks[0].named_children())
    attn = next((n for n in _ATTN_NAMES if n in children), None)
    mlp = next((n for n in _MLP_NAMES if n in children), None)
    if attn is None or mlp is None:
        raise UnsupportedArchitectureError(
            hint.format(why=f"blocks at '{blocks_path}' have no attention/MLP child I recognise")
        )
    parent = blocks_path.rpartition(".")[0]
    final_norm = None
    for n in _NORM_NAMES:
        path = f"{parent}.{n}" if parent else n
        try:
            get_submodule(model, path)
            final_norm = path
            break
        except AttributeError:
            continue
    unembed = None
    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is not None:
        unembed = next((n for n, m in model.named_modules() if m is head), None)
    mlp_children = dict(children[mlp].named_children())
    out_proj = next(
        (
            f"{mlp}.{n}"
            for n in ("down_proj", "c_proj", "fc2", "dense_4h_to_h", "w2")
            if n in mlp_children
        ),
        None,
    )
    spec = ArchSpec(
        family="generic",
        model_types=(str(model_type),),
        blocks=blocks_path,
        attn=attn,
        mlp=mlp,
        mlp_out_proj=out_proj,
        final_norm=final_norm,
        unembed=unembed,
        causal=bool(unembed),
        notes="found by the generic fallback (pre-norm, sequential, unscaled assumed)",
        **_sublayer_fields(blocks[0], attn, mlp),  # type: ignore[arg-type]
    )
    return wire(model, spec)
