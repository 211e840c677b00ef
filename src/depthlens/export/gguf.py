"""Write a (cut) Llama-family checkpoint as a GGUF file that llama.cpp can run.

Uses the ``gguf`` package's writer with llama.cpp's standard tensor names
(``token_embd``, ``blk.N.attn_q`` …, ``output_norm``, ``output``) and ``llama.*``
metadata, plus the tokenizer (BPE vocabulary, merges, special ids, chat template). The
query and key projections are permuted the way llama.cpp's ``convert_hf_to_gguf.py``
does (its rotary embedding pairs dimensions differently from Hugging Face's), and
``transformers`` undoes that permutation when it loads a GGUF, so a round trip returns
the same weights. ``--type``: f32 (exact), f16, or q8_0 (2-D weights only; norms stay
f32).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthlens.errors import DepthlensError
from depthlens.io import check_output_path

TYPES = ("f32", "f16", "q8_0")
SUPPORTED_MODEL_TYPES = ("llama",)
# llama.cpp's file_type codes (LLAMA_FTYPE_*): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0.
_FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7}
_BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def check_exportable(config: Any) -> None:
    """Refuse what this writer cannot express: another family, biases, rope scaling."""
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_MODEL_TYPES:
        raise DepthlensError(
            f"GGUF export supports the Llama family ({', '.join(SUPPORTED_MODEL_TYPES)}); this "
            f"checkpoint is '{mt}'. Use llama.cpp's convert_hf_to_gguf.py for other families"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            raise DepthlensError(
                f"GGUF export: this Llama config sets {flag}=True, which the "
                "llama GGUF layout has no tensor for"
            )
    rs = getattr(config, "rope_scaling", None) or {}
    kind = rs.get("rope_type", rs.get("type", "default")) if isinstance(rs, dict) else "default"
    if kind not in (None, "default"):
        raise DepthlensError(
            f"GGUF export: rope scaling '{kind}' is not written by this "
            "exporter; use llama.cpp's convert_hf_to_gguf.py"
        )


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf's ``permute``: interleave each head's two rotary halves."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _tensors(model: Any, cfg: Any) -> list[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) in llama.cpp's order, q/k permuted."""
    sd = model.state_dict()
    n_head, n_kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(int(cfg.num_hidden_layers)):
        for hf, gg in _BLOCK_NAMES.items():
            w = sd[f"model.layers.{i}.{hf}"]
            if hf == "self_attn.q_proj.weight":
                w = permute_qk(w, n_head)
            elif hf == "self_attn.k_proj.weight":
                w = permute_qk(w, n_kv)
            out.append((f"blk.{i}.{gg}", w))
    out.append(("output_norm.weight", sd["model.norm.weight"]))
    if not getattr(cfg, "tie_word_embeddings", False):
        out.append(("output.weight", sd["lm_head.weight"]))
    return out


def _add_tensor(writer: Any, name: str, t: torch.Tensor, kind: str) -> None:
    import gguf

    arr = t.detach().float().cpu().numpy()
    if arr.ndim == 1 or kind == "f32":
        writer.add_tensor(name, arr.astype(np.float32))
    elif kind == "f16":
        writer.add_tensor(name, arr.astype(np.float16))
    elif arr.shape[-1] % 32 == 0:
        q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:  # Q8_0 blocks are 32 wide; llama.cpp's converter keeps such rows in f16 too
        writer.add_tensor(name, arr.astype(np.float16))


def _add_hparams(w: Any, cfg: Any, name: str, kind: str) -> None:
    d = int(cfg.hidden_size)
    n_head = int(cfg.num_attention_heads)
    w.add_name(name)
    w.add_block_count(int(cfg.num_hidden_layers))
    w.add_context_length(int(cfg.max_position_embeddings))
    w.add_embedding_length(d)
    w.add_feed_forward_length(int(cfg.intermediate_size))
    w.add_head_count(n_head)
    w.add_head_count_kv(int(cfg.num_key_value_heads))
    theta = getattr(cfg, "rope_theta", None)
    if theta is None:
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(int(cfg.vocab_size))
    w.add_rope_dimension_count(int(getattr(cfg, "head_dim", None) or d // n_head))
    w.add_file_type(_FILE_TYPE[kind])


def _add_tokenizer(w: Any, ckpt: Path, vocab_size: int, pre: str) -> None:
    """BPE ("gpt2") vocabulary from tokenizer.json, merges and special ids via SpecialVocab."""
    import gguf

    tj = ckpt / "tokenizer.json"
    if not tj.is_file():
        raise DepthlensError(
            f"GGUF export needs {tj} (a fast BPE tokenizer) to embed the "
            "tokenizer; save the tokenizer with the checkpoint"
        )
    spec = json.loads(tj.read_text(encoding="utf-8"))
    if spec.get("model", {}).get("type") != "BPE":
        raise DepthlensError(
            f"GGUF export writes BPE tokenizers; {tj} is {spec.get('model', {}).get('type')}"
        )
    by_id: dict[int, str] = {i: t for t, i in spec["model"]["vocab"].items()}
    types = {i: gguf.TokenType.NORMAL for i in by_id}
    for tok in spec.get("added_tokens", []):
        by_id[int(tok["id"])] = tok["content"]
        types[int(tok["id"])] = (
            gguf.TokenType.CONTROL if tok.get("special") else gguf.TokenType.USER_DEFINED
        )
    n = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n)]
    ttypes = [int(types.get(i, gguf.TokenType.UNUSED)) for i in range(n)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(ttypes)
    gguf.SpecialVocab(ckpt, load_merges=True, n_vocab=n).add_to_gguf(w, quiet=True)


def default_pre(ckpt: Path) -> str:
    """llama.cpp's pre-tokenizer name: 'smollm' for SmolLM2 descendants, else 'default'."""
    names = [ckpt.name]
    man = ckpt / "depthlens.json"
    if man.is_file():
        names.append(str(json.loads(man.read_text(encoding="utf-8")).get("base_model", "")))
    cfg = ckpt / "config.json"
    if cfg.is_file():
        names.append(str(json.loads(cfg.read_text(encoding="utf-8")).get("_name_or_path", "")))
    return "smollm" if any("smollm" in s.lower() for s in names) else "default"


def export_gguf(
    ckpt: str | Path,
    out: str | Path,
    *,
    kind: str = "f16",
    overwrite: bool = False,
    pre: str | None = None,
) -> dict[str, Any]:
    """Write checkpoint directory ``ckpt`` to GGUF file ``out``; returns a summary."""
    if kind not in TYPES:
        from depthlens.metrics.registry import unknown_choice

        raise DepthlensError(unknown_choice("--type", kind, list(TYPES)))
    src = Path(ckpt)
    cfg_file = src / "config.json"
    if not cfg_file.is_file():
        raise DepthlensError(
            f"{src} is not a checkpoint directory (no config.json); pass the "
            "directory written by `depthlens prune`"
        )
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(src)
    check_exportable(cfg)
    dst = check_output_path(out, overwrite, option="--gguf")
    from transformers import AutoModelForCausalLM

    from depthlens.models.loading import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    return _write(model, cfg, src, dst, kind, pre or default_pre(src))


def _write(model: Any, cfg: Any, src: Path, dst: Path, kind: str, pre: str) -> dict[str, Any]:
    import os

    import gguf

    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        w = gguf.GGUFWriter(tmp, arch="llama")
        _add_hparams(w, cfg, src.name, kind)
        _add_tokenizer(w, src, int(cfg.vocab_size), pre)
        tensors = _tensors(model, cfg)
        for name, t in tensors:
            _add_tensor(w, name, t, kind)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "path": str(dst),
        "type": kind,
        "tensors": len(tensors),
        "bytes": dst.stat().st_size,
        "block_count": int(cfg.num_hidden_layers),
        "tokenizer_pre": pre,
    }
