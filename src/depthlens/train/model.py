"""The lab model: a Llama-shaped decoder whose block wiring is one residual scheme.

Each block is two :class:`Residual` sublayers (``attention``, ``feed_forward``) whose
``forward`` is the scheme's equation. Projections keep Llama's names (``q_proj`` …
``down_proj``, ``model.norm``, ``lm_head``), so a pre-ln, lns, scaled or rezero model folds
into a plain ``LlamaForCausalLM`` by renaming and rescaling weights
(:mod:`depthlens.train.export`); post-ln and deepnorm stay this class, whose sublayer
modules output the stream after the norm (depthlens's "post" wiring).
Attention is causal SDPA with RoPE (Llama's convention); the MLP is SwiGLU; N is RMSNorm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from depthlens.train.schemes import DEFAULT_SCHEME, SCHEMES, Scheme, drop_path, drop_rates

MODEL_TYPE = "depthlens_lab"


class LabConfig(PreTrainedConfig):
    """Shape and scheme of a lab model (saved as config.json for post-ln/deepnorm)."""

    model_type = MODEL_TYPE

    @property
    def depth_for_scheme(self) -> int:
        """L in the scheme's constants (the training depth, also after a cut)."""
        return int(self.scheme_depth or self.num_hidden_layers)

    @property
    def block_ells(self) -> list[int]:
        """The 1-based ℓ of every block (the training indices, also after a cut)."""
        return list(self.block_index or range(1, self.num_hidden_layers + 1))

    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    scheme: str = DEFAULT_SCHEME
    drop_path: float = 0.0
    # The L and the ℓ of each block that the scheme constants use (α = (2L)^¼, 1/√ℓ, …),
    # fixed at training time: cutting blocks shortens block_index and keeps scheme_depth,
    # so a cut model rebuilt from its config computes what the cut model computed.
    scheme_depth: int | None = None  # None: num_hidden_layers
    block_index: list[int] | None = None  # None: 1..num_hidden_layers
    tie_word_embeddings: bool = False
    use_cache: bool = False
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0


class RMSNorm(nn.Module):
    """N(x) = w ⊙ x / √(mean(x²) + ε), computed in float32 as Llama does."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N(x)."""
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(t: int, head_dim: int, theta: float, device: torch.device) -> tuple[Any, Any]:
    """cos, sin of RoPE for positions 0..t-1, each (T, head_dim) (Llama's half layout)."""
    inv = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=device) / head_dim)
    )
    freqs = torch.arange(t, device=device, dtype=torch.float)[:, None] * inv  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos(), emb.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE."""

    def __init__(self, cfg: LabConfig) -> None:
        super().__init__()
        d, self.n_head = cfg.hidden_size, cfg.num_attention_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ/√hd + causal) v, projected back: (B, T, C)."""
        b, t, d = x.shape  # (B, T, C)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)  # (B, H, T, hd)

        q = rotate(heads(self.q_proj(x)), cos.to(x.dtype), sin.to(x.dtype))
        k = rotate(heads(self.k_proj(x)), cos.to(x.dtype), sin.to(x.dtype))
        y = F.scaled_dot_product_attention(q, k, heads(self.v_proj(x)), is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, C)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) ⊙ up(x))."""

    def __init__(self, cfg: LabConfig) -> None:
        super().__init__()
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of the MLP branch."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Residual(nn.Module):
    """One residual sublayer h → h' (F = attention or MLP), wired by the scheme's ``forward``.

    pre:  h' = h + c·F(g·N(h))       (pre-ln: g = c = 1; lns: g = 1/√ℓ; scaled: c = 1/√L)
    post: h' = N(α·h + F(h))         (post-ln: α = 1; deepnorm: α = (2L)^¼)
    none: h' = h + γ·F(h)            (rezero: γ learned, initialised 0)
    Every F output passes through drop-path (identity at eval). The numbers g, c, α of block
    ℓ come from the scheme record (:mod:`depthlens.train.schemes`).
    """

    def __init__(self, branch: nn.Module, cfg: LabConfig, ell: int) -> None:
        super().__init__()
        L = cfg.depth_for_scheme  # noqa: N806
        self.scheme: Scheme = SCHEMES[cfg.scheme]
        self.branch = branch
        if self.scheme.norm == "none":
            self.gate = nn.Parameter(torch.zeros(1))
        else:
            self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.g = self.scheme.input_scale(ell, L)
        self.c = self.scheme.branch_scale(L)
        self.alpha = self.scheme.skip_scale(L)
        self.p_drop = drop_rates(cfg.drop_path, L)[ell - 1]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """N(x)."""
        return self.norm(x)

    def gated(self, y: torch.Tensor) -> torch.Tensor:
        """γ·y (schemes without a norm)."""
        return self.gate * y

    def branch_out(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        """F(x) with drop-path (identity at eval)."""
        return drop_path(self.branch(x, *args), self.p_drop, self.training)

    def forward(self, h: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        """The sublayer's output stream (B, T, C); ``args`` go to the branch (RoPE cos, sin)."""
        return self.scheme.forward(self, h, *args)


class Block(nn.Module):
    """Block ℓ (1-based): the attention sublayer, then the MLP sublayer."""

    def __init__(self, cfg: LabConfig, ell: int) -> None:
        super().__init__()
        self.attention = Residual(Attention(cfg), cfg, ell)
        self.feed_forward = Residual(MLP(cfg), cfg, ell)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """h_ℓ → h_{ℓ+1}."""
        return self.feed_forward(self.attention(h, cos, sin))


class LabBackbone(nn.Module):
    """Embedding, blocks, final norm (identity for ReZero, which has no norm)."""

    def __init__(self, cfg: LabConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, ell) for ell in cfg.block_ells)
        no_norm = SCHEMES[cfg.scheme].norm == "none"
        self.norm: nn.Module = (
            nn.Identity() if no_norm else RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        )
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.rope_theta = cfg.rope_theta

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C)."""
        h = self.embed_tokens(input_ids)  # (B, T, C)
        cos, sin = rope_cos_sin(input_ids.shape[1], self.head_dim, self.rope_theta, h.device)
        for block in self.layers:
            h = block(h, cos, sin)
        return self.norm(h)


class LabForCausalLM(PreTrainedModel):
    """The lab model as a Hugging Face class (saved as is for post-ln and deepnorm)."""

    config_class = LabConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]

    def __init__(self, config: LabConfig) -> None:
        # Pin L and every ℓ into the config now, so a cut model saved later still holds them.
        config.scheme_depth = config.depth_for_scheme
        config.block_index = config.block_ells
        super().__init__(config)
        self.model = LabBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, Residual) and hasattr(module, "gate"):
            nn.init.zeros_(module.gate)

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding."""
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        """The unembedding."""
        return self.lm_head

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits (B, T, V); the mask is ignored: batches are right-padded, attention causal."""
        h = self.model(input_ids)  # (B, T, C)
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        loss = None
        if labels is not None:  # HF convention: labels are the inputs, shifted here
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits)


def init_lab_weights_(model: LabForCausalLM, seed: int) -> None:
    """Seeded init: N(0, 0.02) for matrices; DeepNorm's β on v, o and the MLP weights."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    beta = SCHEMES[cfg.scheme].init_gain(cfg.depth_for_scheme)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * cfg.initializer_range)
                if beta != 1.0 and name.split(".")[-2] in (
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ):
                    p.mul_(beta)
            elif name.endswith(".gate"):
                p.zero_()
            else:
                p.fill_(1.0)


def register_lab() -> None:
    """Make ``AutoConfig``/``AutoModelForCausalLM`` know ``depthlens_lab`` (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(MODEL_TYPE, LabConfig)
        AutoModelForCausalLM.register(LabConfig, LabForCausalLM)
    except ValueError:  # already registered
        pass
