"""Architectures described as data.

Each family is one :class:`ArchSpec`: dotted paths (relative to the loaded model, or to one
block) to the modules depthlens hooks or edits. Adding a family is one entry in
:data:`FAMILIES` plus one tiny-model fixture in the tests. Models whose ``model_type`` is not
in the table go through :func:`generic_spec`, which finds the block ``ModuleList`` itself.
The wiring (norm placement, parallel sublayers, branch multiplier, logit scale and soft-cap)
is declared per family and resolved from the model's config by :func:`resolve_arch`; a model
whose config sets a wiring attribute its family does not read is refused, never approximated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from depthlens.arch.wiring import NormPlacement, Wiring, cut_refusal, wire

__all__ = ["FAMILIES", "ArchSpec", "blocks_of", "cut_refusal", "generic_spec", "get_submodule",
           "resolve_arch", "wire"]  # fmt: skip
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
        return d


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
            "granite", ("granite",),
            multiplier_key="residual_multiplier",  # h + mult·attn(.), h + mult·mlp(.)
            logit_scale_key="logits_scaling",  # logits = head(norm(h)) / scale
            notes="branches scaled by residual_multiplier; logits divided by logits_scaling",
        ),
        _llama_like("gemma", ("gemma",)),
        _llama_like(
            "gemma2", ("gemma2", "gemma3", "gemma3_text"), **_SANDWICH,
            mlp_norm="pre_feedforward_layernorm",
            softcap_key="final_logit_softcapping",
            notes="sandwich norms; ReplaceMe unsupported (MLP output is normalised)",
        ),
        _llama_like(
            "olmo2", ("olmo2",), **_SANDWICH,  # no pre-norms: x + post_norm(f(x))
            attn_norm=None, mlp_norm=None,
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
            "phi", ("phi",), mlp_out_proj="mlp.fc2", final_norm="model.final_layernorm",
            parallel=True, notes="parallel attention/MLP",
            mlp_norm="input_layernorm",  # one norm feeds both sublayers
            attn_linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.dense"),
            mlp_linears=("mlp.fc1", "mlp.fc2"),
        ),
        _llama_like(
            "phi3", ("phi3",),
            attn_linears=("self_attn.qkv_proj", "self_attn.o_proj"),  # fused q/k/v
            mlp_linears=("mlp.gate_up_proj", "mlp.down_proj"),  # fused gate/up
        ),
        # the worked example of docs/ADDING.md (which spells every path out)
        _llama_like(
            "starcoder2", ("starcoder2",), mlp_out_proj="mlp.c_proj",
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
            attn_linears=("attention.self.query", "attention.self.key",
                          "attention.self.value", "attention.output.dense"),
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
            mlp_linears=("feed_forward.branch.gate_proj", "feed_forward.branch.up_proj",
                         "feed_forward.branch.down_proj"),
            cache_index_attr=None,  # recomputes the whole sequence at every step
        ),
    ]
}


def _model_type_index() -> dict[str, ArchSpec]:
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
        spec = _model_type_index().get(str(getattr(config, "model_type", None)))
    return spec.causal if spec is not None else True


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted path, accepting both ``bert.encoder`` and ``encoder`` roots."""
    return root.get_submodule(path)


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
    spec = _model_type_index().get(str(model_type)) if family is None else None
    if spec is not None:
        return wire(model, _base_prefix(model, spec))
    return generic_spec(model)


def generic_spec(model: nn.Module) -> ArchSpec:
    """The generic fallback's spec for ``model`` (see :mod:`depthlens.arch.generic`)."""
    from depthlens.arch.generic import find_generic_spec  # the fallback builds on this module

    return find_generic_spec(model)


def blocks_of(model: nn.Module, spec: ArchSpec) -> nn.ModuleList:
    """The model's block list."""
    blocks = get_submodule(model, spec.blocks)
    if not isinstance(blocks, nn.ModuleList):
        raise UnsupportedArchitectureError(f"'{spec.blocks}' is not a ModuleList of blocks")
    return blocks
