"""FLOP counts per token, for predicted savings and the ideal speed-up of a cut.

Matmul FLOPs are 2 × weight parameters; attention adds 4 × context × (heads × head_dim)
per token for the scores and the weighted sum. The embedding is a lookup (0 FLOPs); the
head is a (d × vocab) matmul for every token. Ideal speed-up (SPEC "Evaluation") =
(all blocks + embedding + head) / (kept blocks + embedding + head).

A sublayer skipped by :func:`depthlens.arch.removed.skip_sublayer_` has no weights and no
attention term; a zeroed one (the plain-transformers form) still costs what it did.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from depthlens.arch.removed import PARTS, module_path, sublayer_is_skipped, sublayer_refusal
from depthlens.arch.spec import blocks_of
from depthlens.models.loading import LoadedModel


def _matmul_params(module: nn.Module) -> int:
    """Parameters of the weight matrices (ndim ≥ 2) under ``module``."""
    return sum(p.numel() for p in module.parameters() if p.ndim >= 2)


def _attention_term(lm: LoadedModel, context: int) -> int:
    """Scores and weighted sum of one attention sublayer, per token at ``context``."""
    model: Any = lm.model
    cfg = model.config.get_text_config()
    d = int(cfg.hidden_size)
    heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    head_dim = int(getattr(cfg, "head_dim", 0) or (d // heads if heads else 0))
    return 4 * context * heads * head_dim


def _skipped_attn(block: nn.Module, lm: LoadedModel) -> bool:
    return sublayer_refusal(lm.arch) is None and sublayer_is_skipped(block, lm.arch, "attn")


def flops_per_token(lm: LoadedModel, context: int = 512) -> dict[str, Any]:
    """{"blocks": [flops per block], "embed": 0, "head": flops, "total": ...}."""
    model: Any = lm.model
    cfg = model.config.get_text_config()
    d = int(cfg.hidden_size)
    attn = _attention_term(lm, context)
    blocks = [
        2 * _matmul_params(b) + (0 if _skipped_attn(b, lm) else attn)
        for b in blocks_of(lm.model, lm.arch)
    ]
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    head = 2 * d * vocab if lm.arch.unembed else 0
    return {
        "blocks": blocks,
        "embed": 0,
        "head": head,
        "context": context,
        "total": sum(blocks) + head,
    }


def cut_savings(lm: LoadedModel, removed: tuple[int, ...], context: int = 512) -> dict[str, Any]:
    """Predicted parameter and FLOP savings of removing ``removed`` blocks."""
    fl = flops_per_token(lm, context)
    blocks = blocks_of(lm.model, lm.arch)
    p_removed = sum(sum(p.numel() for p in blocks[i].parameters()) for i in removed)
    f_removed = sum(fl["blocks"][i] for i in removed)
    return savings(lm, fl, p_removed, f_removed)


def savings(lm: LoadedModel, fl: dict[str, Any], p_removed: int, f_removed: int) -> dict[str, Any]:
    """The savings record of a cut: ``p_removed`` parameters, ``f_removed`` FLOPs per token.

    ``fl`` is ``lm``'s :func:`flops_per_token` (its context is the record's).
    """
    p_total = sum(p.numel() for p in lm.model.parameters())
    return {
        "params_removed": int(p_removed),
        "params_fraction": p_removed / p_total,
        "flops_removed_per_token": int(f_removed),
        "flops_fraction": f_removed / fl["total"],
        "ideal_speedup": fl["total"] / (fl["total"] - f_removed),
        "context": fl["context"],
    }


def sublayer_costs(lm: LoadedModel, context: int = 512) -> list[dict[str, dict[str, int]]]:
    """Per block: {"attn"|"mlp": {"flops": per token at ``context``, "params": count}}.

    A sublayer's cost is its module's (the attention term included); the norms in front
    of it are left out (they stay when the sublayer goes).
    """
    attn = _attention_term(lm, context)
    out = []
    for b in blocks_of(lm.model, lm.arch):
        row: dict[str, dict[str, int]] = {}
        for part in PARTS:
            mod = b.get_submodule(module_path(lm.arch, part))
            flops = 2 * _matmul_params(mod) + (attn if part == "attn" else 0)
            row[part] = {"flops": flops, "params": sum(p.numel() for p in mod.parameters())}
        out.append(row)
    return out
