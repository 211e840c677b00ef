"""Write a (cut) checkpoint as a GGUF file that llama.cpp can run.

The tensor names come from the ``gguf`` package's own map (``gguf.get_tensor_name_map``,
the one llama.cpp's ``convert_hf_to_gguf.py`` uses) for the checkpoint's llama.cpp
architecture; the tokenizer is written by :mod:`depthlens.export.gguf_vocab`. Each family
the exporter writes is one :class:`GgufFamily` in :data:`EXPORTERS`; any other checkpoint
is refused from its config.json alone, before the model is loaded.

For ``llama`` the query and key projections are permuted the way the converter does
(llama.cpp's rotary embedding pairs dimensions differently from Hugging Face's), and
``transformers`` undoes that when it loads a GGUF, so a round trip returns the same
weights; ``qwen2`` uses the NeoX pairing and needs no permutation. ``--type``: f32 (exact),
f16, or q8_0 (2-D weights only; norms and biases stay f32).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthlens.errors import DepthlensError
from depthlens.io import check_output_path

TYPES = ("f32", "f16", "q8_0")
# llama.cpp's file_type codes (LLAMA_FTYPE_*): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0.
_FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7}


@dataclass(frozen=True)
class GgufFamily:
    """How one Hugging Face ``model_type`` is written as one llama.cpp architecture."""

    arch: str  # the name of its gguf.MODEL_ARCH member
    permute_qk: bool  # the converter permutes q/k rows for llama.cpp's rotary pairing
    # config flags that add tensors or behaviour the llama.cpp architecture lacks
    refused_flags: tuple[str, ...] = ()


EXPORTERS: dict[str, GgufFamily] = {
    "llama": GgufFamily("LLAMA", permute_qk=True, refused_flags=("attention_bias", "mlp_bias")),
    "qwen2": GgufFamily("QWEN2", permute_qk=False, refused_flags=("use_sliding_window",)),
}


def _rope_kind(config: dict[str, Any]) -> str:
    rs = config.get("rope_scaling") or config.get("rope_parameters") or {}
    kind = rs.get("rope_type", rs.get("type", "default")) if isinstance(rs, dict) else "default"
    return str(kind or "default")


def export_refusal(config: dict[str, Any]) -> str | None:
    """Why the checkpoint with this config.json cannot be exported, or None when it can."""
    mt = config.get("model_type")
    family = EXPORTERS.get(str(mt))
    if family is None:
        return (
            f"GGUF export writes the {', '.join(EXPORTERS)} families; this checkpoint is "
            f"'{mt}'. Use llama.cpp's convert_hf_to_gguf.py for other families"
        )
    for flag in family.refused_flags:
        if config.get(flag):
            return f"GGUF export: this {mt} config sets {flag}=true, which is not written"
    if _rope_kind(config) != "default":
        return (
            f"GGUF export: rope scaling '{_rope_kind(config)}' is not written by this "
            "exporter; use llama.cpp's convert_hf_to_gguf.py"
        )
    return None


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf's ``permute``: interleave each head's two rotary halves."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def gguf_tensors(model: Any, family: GgufFamily, cfg: Any) -> list[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) for every parameter, named by gguf's tensor map (q/k permuted).

    Tied output embeddings appear once (``named_parameters`` drops the duplicate), as
    llama.cpp expects: with no ``output`` tensor it reuses ``token_embd``.
    """
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[family.arch], int(cfg.num_hidden_layers))
    heads = {
        gguf.MODEL_TENSOR.ATTN_Q: int(cfg.num_attention_heads),
        gguf.MODEL_TENSOR.ATTN_K: int(cfg.num_key_value_heads),
    }
    out = []
    for hf_name, p in model.named_parameters():
        found = names.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise DepthlensError(
                f"GGUF export: the checkpoint's tensor '{hf_name}' has no name in llama.cpp's "
                f"'{family.arch.lower()}' layout; use llama.cpp's convert_hf_to_gguf.py"
            )
        kind, name = found
        w = p.detach()
        if family.permute_qk and kind in heads and hf_name.endswith(".weight"):
            w = permute_qk(w, heads[kind])
        out.append((name, w))
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


def _read_config(src: Path) -> dict[str, Any]:
    cfg_file = src / "config.json"
    if not cfg_file.is_file():
        raise DepthlensError(
            f"{src} is not a checkpoint directory (no config.json); pass the "
            "directory written by `depthlens prune`"
        )
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{cfg_file} is not valid JSON ({exc}); re-save the checkpoint"
        raise DepthlensError(msg) from exc
    if not isinstance(cfg, dict):
        raise DepthlensError(f"{cfg_file} holds no JSON object; re-save the checkpoint")
    return cfg


def export_gguf(
    ckpt: str | Path,
    out: str | Path,
    *,
    kind: str = "f16",
    overwrite: bool = False,
    pre: str | None = None,
) -> dict[str, Any]:
    """Write checkpoint directory ``ckpt`` to GGUF file ``out``; returns a summary.

    Everything that can be refused (type, family, config flags, tokenizer and its
    pre-tokenizer, output path) is refused before the model is loaded.
    """
    from depthlens.export.gguf_vocab import read_bpe_tokenizer, tokenizer_pre

    if kind not in TYPES:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("--type", kind, list(TYPES)))
    src = Path(ckpt)
    why = export_refusal(_read_config(src))
    if why is not None:
        raise DepthlensError(why)
    tokenizer, spec = read_bpe_tokenizer(src)
    pre = pre or tokenizer_pre(tokenizer, spec, src)
    dst = check_output_path(out, overwrite, option="--gguf")
    from transformers import AutoConfig, AutoModelForCausalLM

    from depthlens.models.loading import quiet_transformers

    cfg = AutoConfig.from_pretrained(src)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    family = EXPORTERS[str(cfg.model_type)]
    return _write(model, cfg, family, (src, tokenizer, pre), dst, kind)


def _write(
    model: Any, cfg: Any, family: GgufFamily, vocab: tuple[Path, Any, str], dst: Path, kind: str
) -> dict[str, Any]:
    import gguf

    from depthlens.export.gguf_vocab import add_bpe_vocab

    src, tokenizer, pre = vocab
    tensors = gguf_tensors(model, family, cfg)  # refuses an unmapped tensor before writing
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        w = gguf.GGUFWriter(tmp, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[family.arch]])
        _add_hparams(w, cfg, src.name, kind)
        add_bpe_vocab(w, src, tokenizer, int(cfg.vocab_size), pre)
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
        "arch": family.arch.lower(),
        "tensors": len(tensors),
        "bytes": dst.stat().st_size,
        "block_count": int(cfg.num_hidden_layers),
        "tokenizer_pre": pre,
    }
