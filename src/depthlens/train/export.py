"""Save a trained lab model as a checkpoint the rest of depthlens (and transformers) reads.

pre-ln, lns, scaled and rezero are exactly a ``LlamaForCausalLM`` at inference once their
constants are folded into weights:

* lns:    N(h)/√ℓ            → both RMSNorm weights of block ℓ × 1/√ℓ
* scaled: F(N(h))/√L         → ``o_proj`` and ``down_proj`` × 1/√L
* rezero: α_ℓ·F(h), no norm  → ``o_proj`` and ``down_proj`` × α_ℓ; every RMSNorm becomes
  the identity with ``rms_norm_eps`` = 1e12 and weights √1e12 = 1e6:
  x·1e6/√(mean(x²)+1e12) = x·(1 + mean(x²)/1e12)^{-½}, i.e. x up to float32 rounding while
  mean(x²) ≪ 1e6 (relative error mean(x²)/2e12).

post-ln and deepnorm are saved as the lab's own class (``model_type`` "depthlens_lab",
safetensors + config.json); :mod:`depthlens.models.loading` registers it on sight.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlens.train.model import LabForCausalLM
from depthlens.train.schemes import SCHEMES

#: ReZero has no norm; Llama always normalises. eps = 1e12 with weight 1e6 makes RMSNorm the
#: identity to float32 precision (see the module docstring).
IDENTITY_NORM_EPS = 1e12


def llama_config(lab: LabForCausalLM) -> Any:
    """The ``LlamaConfig`` with the lab model's shape."""
    from transformers import LlamaConfig

    c = lab.config
    no_norm = SCHEMES[c.scheme].norm == "none"
    return LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_attention_heads,
        head_dim=c.hidden_size // c.num_attention_heads,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=IDENTITY_NORM_EPS if no_norm else c.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        use_cache=True,
    )


_RENAME = (
    (".attention.norm.", ".input_layernorm."),
    (".attention.branch.", ".self_attn."),
    (".feed_forward.norm.", ".post_attention_layernorm."),
    (".feed_forward.branch.", ".mlp."),
)


def _llama_name(name: str) -> str:
    for old, new in _RENAME:
        name = name.replace(old, new)
    return name


def llama_state_dict(lab: LabForCausalLM) -> dict[str, torch.Tensor]:
    """The lab weights with every scheme constant folded in, under Llama's names."""
    c = lab.config
    scheme = SCHEMES[c.scheme]
    L = c.depth_for_scheme  # noqa: N806
    sd = {k: v.detach().clone().float() for k, v in lab.state_dict().items()}
    ident = torch.full((c.hidden_size,), math.sqrt(IDENTITY_NORM_EPS))
    for i, ell in enumerate(c.block_ells):
        pre = f"model.layers.{i}."
        for sub, proj in (("attention", "o_proj"), ("feed_forward", "down_proj")):
            out_scale = scheme.branch_scale(L)
            if scheme.norm == "none":  # γ·F(h): γ into the output projection, N := identity
                out_scale = float(sd.pop(f"{pre}{sub}.gate"))
                sd[f"{pre}{sub}.norm.weight"] = ident.clone()
            sd[f"{pre}{sub}.branch.{proj}.weight"] *= out_scale
            sd[f"{pre}{sub}.norm.weight"] *= scheme.input_scale(ell, L)
    if scheme.norm == "none":
        sd["model.norm.weight"] = ident.clone()
    return {_llama_name(k): v for k, v in sd.items()}


def to_llama(lab: LabForCausalLM) -> nn.Module:
    """A ``LlamaForCausalLM`` whose logits equal ``lab``'s (schemes that export as Llama)."""
    from transformers import LlamaForCausalLM

    if not SCHEMES[lab.config.scheme].exports_as_llama:
        raise ValueError(f"scheme {lab.config.scheme} has no Llama form")
    llama = LlamaForCausalLM(llama_config(lab))
    llama.load_state_dict(llama_state_dict(lab), strict=True)
    return llama.eval()


def export_model(lab: LabForCausalLM, tokenizer: Any, out: Path) -> str:
    """Write the inference checkpoint into the existing folder ``out``; returns its class."""
    from depthlens.models.loading import quiet_transformers

    model: nn.Module = to_llama(lab) if SCHEMES[lab.config.scheme].exports_as_llama else lab
    with quiet_transformers():
        model.save_pretrained(out)  # type: ignore[operator]
        tokenizer.save_pretrained(out)
    return type(model).__name__
