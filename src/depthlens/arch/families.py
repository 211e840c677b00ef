"""The table of architecture families, one :class:`~depthlens.arch.layout.ArchSpec` each.

Adding a family is one entry in :data:`FAMILIES` plus one tiny-model fixture in the tests
(docs/ADDING.md). Models whose ``model_type`` is in no entry go through the generic
fallback (:mod:`depthlens.arch.generic`).
"""

from __future__ import annotations

from typing import Any

from depthlens.arch.layout import ArchSpec

_LLAMA_LIKE: dict[str, Any] = dict(
    blocks="model.layers",
    attn="self_attn",
    mlp="mlp",
    mlp_out_proj="mlp.down_proj",
    final_norm="model.norm",
    unembed="lm_head",
    attn_module="self_attn",
    attn_norm="input_layernorm",
    mlp_module="mlp",
    mlp_norm="post_attention_layernorm",
    attn_linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    mlp_linears=("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    cache_index_attr="layer_idx",
)


def _llama_like(family: str, model_types: tuple[str, ...], **changes: Any) -> ArchSpec:
    """A family laid out as Llama (``model.layers``, ``model.norm``, …) but for ``changes``."""
    return ArchSpec(family=family, model_types=model_types, **{**_LLAMA_LIKE, **changes})


# Sandwich norms: each sublayer's output is normalised before the residual add, so what is
# added is the post-norm's output, and the MLP output projection cannot absorb a linear map
# (post_norm(y)·T is no post_norm(y·T')): no mlp_out_proj, ReplaceMe is not available.
_SANDWICH: dict[str, Any] = dict(
    attn="post_attention_layernorm",
    mlp="post_feedforward_layernorm",
    mlp_out_proj=None,
    norm="sandwich",
)

FAMILIES: dict[str, ArchSpec] = {
    s.family: s
    for s in [
        _llama_like("llama", ("llama", "mistral", "qwen2", "qwen3", "olmo")),
        _llama_like(
            "granite",
            ("granite",),
            multiplier_key="residual_multiplier",  # h + mult·attn(.), h + mult·mlp(.)
            logit_scale_key="logits_scaling",  # logits = head(norm(h)) / scale
            notes="branches scaled by residual_multiplier; logits divided by logits_scaling",
        ),
        _llama_like("gemma", ("gemma",)),
        _llama_like(
            "gemma2",
            ("gemma2", "gemma3", "gemma3_text"),
            **_SANDWICH,
            mlp_norm="pre_feedforward_layernorm",
            softcap_key="final_logit_softcapping",
            notes="sandwich norms; ReplaceMe unsupported (MLP output is normalised)",
        ),
        _llama_like(
            "olmo2",
            ("olmo2",),
            **_SANDWICH,  # no pre-norms: x + post_norm(f(x))
            attn_norm=None,
            mlp_norm=None,
            notes="post-sublayer norms only; ReplaceMe unsupported (MLP output is normalised)",
        ),
        ArchSpec(
            family="gpt2",
            model_types=("gpt2",),
            blocks="transformer.h",
            attn="attn",
            mlp="mlp",
            mlp_out_proj="mlp.c_proj",  # Conv1D: weight is (in, out)
            final_norm="transformer.ln_f",
            unembed="lm_head",
            attn_module="attn",
            attn_norm="ln_1",
            mlp_module="mlp",
            mlp_norm="ln_2",
            attn_linears=("attn.c_attn", "attn.c_proj"),  # Conv1D, fused q/k/v
            mlp_linears=("mlp.c_fc", "mlp.c_proj"),
            cache_index_attr="layer_idx",
            depth_dependent=(("scale_attn_by_inverse_layer_idx", (True,)),),  # 1/(layer_idx+1)
        ),
        ArchSpec(
            family="gpt_neox",
            model_types=("gpt_neox",),
            blocks="gpt_neox.layers",
            attn="attention",
            mlp="mlp",
            mlp_out_proj="mlp.dense_4h_to_h",
            final_norm="gpt_neox.final_layer_norm",
            unembed="lm_head",  # "embed_out" before transformers 5 (renamed on load)
            attn_module="attention",
            attn_norm="input_layernorm",
            mlp_module="mlp",
            mlp_norm="post_attention_layernorm",  # reads h_l when parallel, else h_l + a_l
            attn_linears=("attention.query_key_value", "attention.dense"),
            mlp_linears=("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),
            cache_index_attr="layer_idx",
            parallel_key="use_parallel_residual",
            notes="parallel attention/MLP when use_parallel_residual",
        ),
        _llama_like(
            "phi",
            ("phi",),
            mlp_out_proj="mlp.fc2",
            final_norm="model.final_layernorm",
            parallel=True,
            notes="parallel attention/MLP",
            mlp_norm="input_layernorm",  # one norm feeds both sublayers
            attn_linears=(
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.dense",
            ),
            mlp_linears=("mlp.fc1", "mlp.fc2"),
        ),
        _llama_like(
            "phi3",
            ("phi3",),
            attn_linears=("self_attn.qkv_proj", "self_attn.o_proj"),  # fused q/k/v
            mlp_linears=("mlp.gate_up_proj", "mlp.down_proj"),  # fused gate/up
        ),
        # the worked example of docs/ADDING.md (which spells every path out)
        _llama_like(
            "starcoder2",
            ("starcoder2",),
            mlp_out_proj="mlp.c_proj",
            mlp_linears=("mlp.c_fc", "mlp.c_proj"),
        ),
        ArchSpec(
            family="bert",
            model_types=("bert", "roberta"),
            blocks="encoder.layer",
            attn="attention",
            attn_mode="stream",
            # BertOutput = LayerNorm(dense(x) + residual): its output is h_{l+1}; m_l is then
            # taken as Δ_l − a_l, which is what the MLP half adds to the stream.
            mlp="output",
            mlp_mode="stream",
            mlp_out_proj=None,
            final_norm=None,
            unembed=None,
            causal=False,
            norm="post",
            notes="post-norm encoder; no logit lens",
            attn_module="attention.self",  # reads h_l; attention.output adds and normalises
            mlp_module=None,  # intermediate (up + activation), then output (down + add + norm)
            attn_linears=(
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
            ),
            mlp_linears=("intermediate.dense", "output.dense"),
            cache_index_attr=None,  # an encoder: no KV cache
        ),
        ArchSpec(
            # depthlens's own lab models (depthlens.train) that no standard class expresses:
            # post-ln N(h + F(h)) and deepnorm N(α·h + F(h)). Each sublayer module outputs
            # the stream after its norm, so what it adds is its output minus its input.
            family="depthlens_lab",
            model_types=("depthlens_lab",),
            blocks="model.layers",
            attn="attention",
            attn_mode="stream",
            mlp="feed_forward",
            mlp_mode="stream",
            mlp_out_proj=None,  # the MLP output is normalised after the add
            final_norm="model.norm",
            unembed="lm_head",
            norm="post",
            # The scheme constants read config.scheme_depth (kept by a cut) and
            # config.block_index (sliced by a cut), never the current depth or position,
            # so a cut lab model rebuilt from its config is exact.
            per_layer_config=("block_index",),
            notes="post-norm lab model (post-ln, deepnorm); ReplaceMe unsupported",
            attn_module="attention.branch",  # F of N(α·h + F(h)): reads h unnormalised
            mlp_module="feed_forward.branch",
            attn_linears=tuple(f"attention.branch.{p}_proj" for p in "qkvo"),
            mlp_linears=(
                "feed_forward.branch.gate_proj",
                "feed_forward.branch.up_proj",
                "feed_forward.branch.down_proj",
            ),
            cache_index_attr=None,  # recomputes the whole sequence at every step
        ),
    ]
}


def model_type_index() -> dict[str, ArchSpec]:
    """{``model_type``: the spec of its family}."""
    return {mt: spec for spec in FAMILIES.values() for mt in spec.model_types}


def is_causal_lm(config: Any, family: str | None = None) -> bool:
    """Whether a model with ``config`` loads as a causal LM, else as an encoder.

    Read from the family's spec (``family`` as passed to ``--arch``, else the one of the
    config's ``model_type``) before the model is built; a type no family knows is taken as
    causal unless its config says it is an encoder-decoder.
    """
    if getattr(config, "is_encoder_decoder", False):
        return False
    if family is not None and family != "generic":
        spec = FAMILIES.get(family)
    else:
        spec = model_type_index().get(str(getattr(config, "model_type", None)))
    return spec.causal if spec is not None else True
