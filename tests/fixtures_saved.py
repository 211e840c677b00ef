"""Tiny random models saved to disk with a tiny tokenizer, so the CLI can load them.

``save_tiny(dirpath)`` writes an ordinary Hugging Face checkpoint (safetensors, config,
generation config) of a tiny random model from :mod:`tiny_models`, plus a word-level
tokenizer over the same 128-id vocabulary: ``<pad>``=0, ``<s>``=1, ``</s>``=2 and the
words ``w3`` .. ``w127``. :func:`word_text` makes text that tokenizes to known ids.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import BOS_ID, EOS_ID, PAD_ID, VOCAB, tiny_model
from transformers import PreTrainedModel, PreTrainedTokenizerFast

SPECIALS = {"<pad>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID}


class Killed(BaseException):
    """Stands in for SIGKILL in-process: no ``except Exception`` handler catches it."""


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer whose ids match the tiny models' vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = dict(SPECIALS)
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w3"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="w3",
    )


def save_tiny(path: Path, name: str = "llama", model: PreTrainedModel | None = None) -> Path:
    """Save tiny model ``name`` (or ``model``) and the tiny tokenizer to ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    m = model if model is not None else tiny_model(name)
    m.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def word_text(n_words: int, seed: int = 0, per_line: int = 50) -> str:
    """Seeded random words ``w3`` .. ``w127``, ``per_line`` to a line."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), VOCAB, (n_words,), generator=gen).tolist()
    words = [f"w{i}" for i in ids]
    lines = [" ".join(words[i : i + per_line]) for i in range(0, n_words, per_line)]
    return "\n".join(lines) + "\n"


def write_text(path: Path, n_words: int, seed: int = 0) -> Path:
    """Write :func:`word_text` to ``path``."""
    path.write_text(word_text(n_words, seed), encoding="utf-8")
    return path


def hf_greedy(model: Path, prompt: str, new: int) -> list[int]:
    """Plain ``generate(do_sample=False)`` of the saved checkpoint, through transformers only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(model).eval()
    ids = AutoTokenizer.from_pretrained(model)(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = m.generate(ids, do_sample=False, max_new_tokens=new)
    return out[0, ids.shape[1] :].tolist()
