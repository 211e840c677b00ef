"""A byte-level BPE tokenizer trained on the training text (``tokenizers`` library).

A small vocabulary (default 4096) keeps the embedding table from dwarfing a small model.
The tokenizer is saved beside the model as an ordinary ``PreTrainedTokenizerFast``, so
``AutoTokenizer.from_pretrained(dir)`` and every depthlens command read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from depthlens.errors import DepthlensError

EOS = "<|endoftext|>"
MIN_VOCAB = 257  # the 256 byte symbols plus EOS


def train_tokenizer(docs: Sequence[str], vocab_size: int = 4096) -> Any:
    """BPE over bytes (GPT-2's pre-tokenizer); ``<|endoftext|>`` is BOS, EOS and padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise DepthlensError(
            f"--vocab-size {vocab_size} is below {MIN_VOCAB} (256 bytes + EOS); raise it"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(docs), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=1 << 30,
    )


def load_tokenizer(path: Any) -> Any:
    """A tokenizer saved by :func:`train_tokenizer` (via ``save_pretrained``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def token_stream(docs: Sequence[str], tokenizer: Any) -> torch.Tensor:
    """All docs as one id stream, each preceded by EOS (the document separator): (N,)."""
    eos = int(tokenizer.eos_token_id)
    ids: list[list[int]] = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
    flat: list[int] = []
    for d in ids:
        flat.append(eos)
        flat.extend(d)
    return torch.tensor(flat, dtype=torch.long)
