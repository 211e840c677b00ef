"""Tiny saved checkpoints with a real (tiny, trained in memory) BPE tokenizer, no downloads.

Used by the export and heal tests: a cut tiny Llama saved as `depthlens prune` saves it,
and any family fixture saved with a tokenizer in the layout of its family's real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from conftest import random_windows
from tiny_models import _LLAMA_KW, _finish, tiny_model
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from depthlens.arch.spec import resolve_arch
from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned
from depthlens.models.loading import LoadedModel

TEXT = ["the cat sat on the mat", "a dog ran in the park", "the sun is warm today"] * 20
# Qwen2's split regex (its tokenizer.json), before a byte-level step without a regex.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def tiny_tokenizer(style: str = "gpt2") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in memory; ``style`` "qwen2" pre-splits as Qwen2."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if style == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Whitespace()  # a layout llama.cpp has no name for
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def save_family(name: str, out: Path, style: str = "gpt2") -> tuple[Path, torch.Tensor]:
    """Save the tiny model of family fixture ``name`` with a tokenizer; (dir, token ids)."""
    tok = tiny_tokenizer(style)
    model = tiny_model(name)
    model.resize_token_embeddings(len(tok))  # so every token id has an embedding row
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, torch.tensor([tok("the cat ran in the park").input_ids])


def tiny_pruned(tmp: Path, keep_teacher: bool = False) -> Any:
    """Cut a 6-block tiny Llama (replaceme-multi) and save it with the tokenizer.

    Returns (checkpoint dir, token ids), plus the uncut model's dir with ``keep_teacher``.
    """
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**_LLAMA_KW, "num_hidden_layers": 6, "vocab_size": len(tok)})
    model = _finish(LlamaForCausalLM(cfg), 6)
    lm = LoadedModel(model, tok, resolve_arch(model), ref="tiny-llama6", source="test")
    if keep_teacher:
        model.save_pretrained(tmp / "teacher")
        tok.save_pretrained(tmp / "teacher")
    w = random_windows(n=10, seq_len=16, vocab=len(tok))
    plan = plan_cut(lm, w, "replaceme-multi", CutOptions(blocks=(2, 4)))
    apply_cut_(lm, plan)
    out = save_pruned(lm, plan, tmp / "pruned")
    ids = torch.tensor([tok("the cat ran in the park").input_ids])
    return (out, ids, tmp / "teacher") if keep_teacher else (out, ids)
