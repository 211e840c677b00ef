"""Tiny random Hugging Face models, built from configs in code (no downloads).

Every factory seeds torch, builds the model in fp32, puts it in eval mode and checks with
:func:`assert_tiny` that it really is tiny: a misspelled config key (tuned-lens once wrote
``n_layers`` for GPT-2 and got the full-size model) is silently accepted by transformers and
would otherwise give a large model and a slow, misleading test.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GraniteConfig,
    GraniteForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    OlmoConfig,
    OlmoForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    RobertaConfig,
    RobertaModel,
    Starcoder2Config,
    Starcoder2ForCausalLM,
)

SEED = 0
N_LAYERS = 4
GEMMA3_LAYERS = 6  # 5 sliding + 1 global, so Gemma 3's 5:1 pattern shows
VOCAB = 128
HIDDEN = 32
HEADS = 4
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 64
MAX_POS = 64
MAX_PARAMS = 2_000_000
# Inside the vocabulary, so tokenizer-free tests can build inputs from these ids.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

_TOKEN_IDS = dict(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
# Keys shared by the Llama-style configs (llama, mistral, qwen2/3, gemma*, phi3).
_LLAMA_KW = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=INTERMEDIATE,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=HEADS,
    num_key_value_heads=2,  # grouped-query attention, as in the real models
    head_dim=HEAD_DIM,  # several configs default to 128 or 256
    max_position_embeddings=MAX_POS,
    **_TOKEN_IDS,
)


# The same sizes spelled the standard way (GPT-NeoX, Phi, BERT, RoBERTa, the lab model).
_PLAIN_KW = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=INTERMEDIATE,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=HEADS,
    max_position_embeddings=MAX_POS,
    **_TOKEN_IDS,
)


def _count_blocks(model: nn.Module) -> int:
    """Length of the longest ModuleList, independent of depthlens' own block finder."""
    return max((len(m) for m in model.modules() if isinstance(m, nn.ModuleList)), default=0)


def assert_tiny(model: nn.Module, n_layers: int | None) -> None:
    """Fail loudly if ``model`` is not the tiny model its factory meant to build."""
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < MAX_PARAMS, f"{type(model).__name__} has {n_params:,} parameters"
    if n_layers is not None:
        config_layers = model.config.get_text_config().num_hidden_layers
        assert config_layers == n_layers, f"config says {config_layers} layers, not {n_layers}"
        assert _count_blocks(model) == n_layers, f"built {_count_blocks(model)} blocks"
        hidden = model.config.get_text_config().hidden_size
        assert hidden <= 64, f"hidden size {hidden}"


def _perturb_norms_(model: nn.Module) -> None:
    """Give every norm random affine parameters (same seed stream as the factory).

    Freshly initialised norms are all identical (weight 1 or 0, bias 0), so a spec that named
    the wrong norm, or a lens that skipped a norm's affine part, would still match the model.
    """
    with torch.no_grad():
        for mod in model.modules():
            if "norm" in type(mod).__name__.lower():
                for p in mod.parameters(recurse=False):
                    p.add_(0.1 * torch.randn_like(p))


def _finish(model: PreTrainedModel, n_layers: int | None = N_LAYERS) -> PreTrainedModel:
    _perturb_norms_(model)
    model = model.float().eval()
    assert_tiny(model, n_layers)
    return model


def tiny_llama() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(LlamaForCausalLM(LlamaConfig(**_LLAMA_KW)))


def tiny_llama_base() -> PreTrainedModel:
    """A bare LlamaModel: no LM head, blocks at ``layers`` instead of ``model.layers``."""
    torch.manual_seed(SEED)
    return _finish(LlamaModel(LlamaConfig(**_LLAMA_KW)))


def tiny_mistral() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(MistralForCausalLM(MistralConfig(**_LLAMA_KW, sliding_window=4)))


def tiny_qwen2() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(Qwen2ForCausalLM(Qwen2Config(**_LLAMA_KW)))


def tiny_qwen3() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(Qwen3ForCausalLM(Qwen3Config(**_LLAMA_KW)))


def tiny_gemma() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(GemmaForCausalLM(GemmaConfig(**_LLAMA_KW)))


def tiny_gemma2() -> PreTrainedModel:
    torch.manual_seed(SEED)
    config = Gemma2Config(
        **_LLAMA_KW,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"] * (N_LAYERS // 2),
        final_logit_softcapping=2.0,  # small enough to change the tiny model's logits
        attn_logit_softcapping=50.0,
        query_pre_attn_scalar=HEAD_DIM,
    )
    return _finish(Gemma2ForCausalLM(config))


def tiny_gemma3() -> PreTrainedModel:
    torch.manual_seed(SEED)
    kw = {**_LLAMA_KW, "num_hidden_layers": GEMMA3_LAYERS}
    config = Gemma3TextConfig(
        **kw,
        sliding_window=4,  # shorter than the test sequences, so the local layers differ
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        query_pre_attn_scalar=HEAD_DIM,
        final_logit_softcapping=2.0,  # Gemma3ForCausalLM applies it
    )
    return _finish(Gemma3ForCausalLM(config), GEMMA3_LAYERS)


def tiny_gemma3_multimodal() -> PreTrainedModel:
    """Gemma3ForConditionalGeneration: text blocks at ``model.language_model.layers``."""
    torch.manual_seed(SEED)
    text = Gemma3TextConfig(
        **_LLAMA_KW,
        sliding_window=4,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
        query_pre_attn_scalar=HEAD_DIM,
        # Set, but Gemma3ForConditionalGeneration does not apply it: the lens must not either.
        final_logit_softcapping=2.0,
    )
    vision = dict(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=2,  # fewer than the text blocks, which assert_tiny counts
        num_attention_heads=HEADS,
        image_size=28,
        patch_size=14,
    )
    config = Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=VOCAB - 3,
        eoi_token_index=VOCAB - 2,
        image_token_index=VOCAB - 1,
    )
    return _finish(Gemma3ForConditionalGeneration(config))


def tiny_olmo() -> PreTrainedModel:
    torch.manual_seed(SEED)
    kw = {k: v for k, v in _LLAMA_KW.items() if k != "head_dim"}
    return _finish(OlmoForCausalLM(OlmoConfig(**kw, clip_qkv=2.0)))


def tiny_starcoder2() -> PreTrainedModel:
    """StarCoder 2: pre-norm LayerNorm blocks, MLP c_fc -> c_proj (docs/ADDING.md)."""
    torch.manual_seed(SEED)
    kw = {k: v for k, v in _LLAMA_KW.items() if k not in ("head_dim", "rms_norm_eps")}
    return _finish(Starcoder2ForCausalLM(Starcoder2Config(**kw)))


def tiny_olmo2() -> PreTrainedModel:
    """OLMo 2: no pre-norms, a norm after each sublayer (x + post_norm(f(x)))."""
    torch.manual_seed(SEED)
    kw = {k: v for k, v in _LLAMA_KW.items() if k != "head_dim"}
    return _finish(Olmo2ForCausalLM(Olmo2Config(**kw)))


def tiny_granite() -> PreTrainedModel:
    """Granite with non-neutral multipliers, so a spec that ignores them fails the tests."""
    torch.manual_seed(SEED)
    config = GraniteConfig(
        **{k: v for k, v in _LLAMA_KW.items() if k != "head_dim"},
        residual_multiplier=0.5,  # h + 0.5·f(h)
        logits_scaling=4.0,  # logits / 4
        embedding_multiplier=3.0,
        attention_multiplier=HEAD_DIM**-0.5,
    )
    return _finish(GraniteForCausalLM(config))


def tiny_gpt2() -> PreTrainedModel:
    torch.manual_seed(SEED)
    # GPT-2 spells its sizes n_layer / n_embd / n_head / n_positions; any other spelling is
    # stored as an unused attribute and leaves the 124M defaults in place.
    config = GPT2Config(
        vocab_size=VOCAB,
        n_layer=N_LAYERS,
        n_embd=HIDDEN,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        n_positions=MAX_POS,
        **_TOKEN_IDS,
    )
    return _finish(GPT2LMHeadModel(config))


def _tiny_gpt_neox(parallel: bool) -> PreTrainedModel:
    torch.manual_seed(SEED)
    config = GPTNeoXConfig(**_PLAIN_KW, use_parallel_residual=parallel)
    return _finish(GPTNeoXForCausalLM(config))


def tiny_gpt_neox_parallel() -> PreTrainedModel:
    return _tiny_gpt_neox(parallel=True)


def tiny_gpt_neox_sequential() -> PreTrainedModel:
    return _tiny_gpt_neox(parallel=False)


def tiny_phi() -> PreTrainedModel:
    torch.manual_seed(SEED)
    config = PhiConfig(**_PLAIN_KW)
    return _finish(PhiForCausalLM(config))


def tiny_phi3() -> PreTrainedModel:
    torch.manual_seed(SEED)
    kw = {k: v for k, v in _LLAMA_KW.items() if k != "head_dim"}  # Phi-3 derives it
    return _finish(Phi3ForCausalLM(Phi3Config(**kw)))


def _bert_config() -> BertConfig:
    return BertConfig(**_PLAIN_KW)


def tiny_bert() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(BertModel(_bert_config()))


def tiny_roberta() -> PreTrainedModel:
    torch.manual_seed(SEED)
    # RoBERTa's positions start after the pad id.
    config = RobertaConfig(**{**_PLAIN_KW, "max_position_embeddings": MAX_POS + PAD_ID + 1})
    return _finish(RobertaModel(config))


def tiny_bert_mlm() -> PreTrainedModel:
    """BertForMaskedLM: the blocks sit under a ``bert.`` prefix."""
    torch.manual_seed(SEED)
    return _finish(BertForMaskedLM(_bert_config()))


def _tiny_lab(scheme: str) -> PreTrainedModel:
    """depthlens's own lab model (model_type "depthlens_lab"), registered with the Auto classes."""
    from depthlens.train.model import LabConfig, LabForCausalLM, register_lab

    register_lab()  # so a saved lab model reloads with AutoModelForCausalLM
    torch.manual_seed(SEED)
    config = LabConfig(**_PLAIN_KW, scheme=scheme)
    return _finish(LabForCausalLM(config))


def tiny_lab_post_ln() -> PreTrainedModel:
    return _tiny_lab("post-ln")


def tiny_lab_deepnorm() -> PreTrainedModel:
    return _tiny_lab("deepnorm")


class WeirdConfig(PretrainedConfig):
    """A config whose model_type is in no table."""

    model_type = "weird"

    def __init__(self, vocab_size: int = VOCAB, hidden_size: int = HIDDEN, **kwargs) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class WeirdModel(PreTrainedModel):
    """An unsupported layout: an embedding, one mixer and a head, no block ModuleList."""

    config_class = WeirdConfig
    base_model_prefix = "weird"

    def __init__(self, config: WeirdConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.mixer = nn.Linear(config.hidden_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mixer(self.embed(input_ids))))  # (B, T, V)


class _Blob(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.token_mixer = nn.Linear(hidden, hidden)
        self.channel_mixer = nn.Linear(hidden, hidden)


class WeirdBlocksModel(WeirdModel):
    """Unsupported differently: a block ModuleList whose sublayers have unknown names."""

    def __init__(self, config: WeirdConfig) -> None:
        super().__init__(config)
        self.blobs = nn.ModuleList(_Blob(config.hidden_size) for _ in range(N_LAYERS))
        self.post_init()


def tiny_weird() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(WeirdModel(WeirdConfig(**_TOKEN_IDS)), n_layers=None)


def tiny_weird_blocks() -> PreTrainedModel:
    torch.manual_seed(SEED)
    return _finish(WeirdBlocksModel(WeirdConfig(**_TOKEN_IDS)), n_layers=None)


#: One factory per supported family (gpt_neox twice: parallel and sequential residual).
TINY_FAMILIES: dict[str, Callable[[], PreTrainedModel]] = {
    "llama": tiny_llama,
    "mistral": tiny_mistral,
    "qwen2": tiny_qwen2,
    "qwen3": tiny_qwen3,
    "gemma": tiny_gemma,
    "gemma2": tiny_gemma2,
    "gemma3": tiny_gemma3,
    "gpt2": tiny_gpt2,
    "gpt_neox": tiny_gpt_neox_parallel,
    "gpt_neox_sequential": tiny_gpt_neox_sequential,
    "phi": tiny_phi,
    "phi3": tiny_phi3,
    "bert": tiny_bert,
    "bert_mlm": tiny_bert_mlm,
    "olmo": tiny_olmo,
    "olmo2": tiny_olmo2,
    "granite": tiny_granite,
    "starcoder2": tiny_starcoder2,
    "roberta": tiny_roberta,
    "lab_post_ln": tiny_lab_post_ln,
    "lab_deepnorm": tiny_lab_deepnorm,
}

#: The depthlens family each tiny model should resolve to.
EXPECTED_FAMILY: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma2",
    "gpt2": "gpt2",
    "gpt_neox": "gpt_neox",
    "gpt_neox_sequential": "gpt_neox",
    "phi": "phi",
    "phi3": "phi3",
    "bert": "bert",
    "bert_mlm": "bert",
    "olmo": "llama",
    "olmo2": "olmo2",
    "granite": "granite",
    "starcoder2": "starcoder2",
    "roberta": "bert",
    "lab_post_ln": "depthlens_lab",
    "lab_deepnorm": "depthlens_lab",
}

_OTHER: dict[str, Callable[[], PreTrainedModel]] = {
    "llama_base": tiny_llama_base,
    "gemma3_multimodal": tiny_gemma3_multimodal,
    "weird": tiny_weird,
    "weird_blocks": tiny_weird_blocks,
}


def tiny_model(name: str) -> PreTrainedModel:
    """Build the tiny model called ``name`` (a key of TINY_FAMILIES, or llama_base/weird*)."""
    factories = {**TINY_FAMILIES, **_OTHER}
    if name not in factories:
        raise KeyError(f"no tiny model '{name}'; choose one of: {', '.join(sorted(factories))}")
    return factories[name]()
