"""The tokenizer of a GGUF file: a BPE vocabulary as llama.cpp's converter writes it.

The token list and types come from the checkpoint's own tokenizer (``AutoTokenizer``), id
by id, as ``convert_hf_to_gguf.py`` builds them (added special tokens are CONTROL, other
added tokens USER_DEFINED, ids the tokenizer lacks up to the model's vocabulary size
``[PAD<i>]`` UNUSED); merges, special ids and the chat template are written by ``gguf``'s
own :class:`gguf.SpecialVocab`.

llama.cpp re-implements each pre-tokenizer (the regex split before BPE) by name
(``tokenizer.ggml.pre``). The name is chosen as the converter chooses it: the SHA-256 of the
tokens of one fixed check text identifies a known tokenizer; otherwise the tokenizer's own
``pre_tokenizer`` config (tokenizer.json) is matched against the layouts whose llama.cpp
name is known. A tokenizer matching neither is refused: a wrong name would make llama.cpp
split text differently from the model's own tokenizer, with no error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError

#: The check text of llama.cpp's convert_hf_to_gguf_update.py (its tokens' hash is the key).
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d"
    "\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 "
    "3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2"
    "\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 ?\u6211\u60f3\u5728apple"
    "\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 "
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!"
    "?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like "
    "some tea? We'Ve a'lL"
)

#: sha256(str(token ids of CHECK_TEXT)) -> llama.cpp pre-tokenizer, for the tokenizers of the
#: families this exporter writes (values from llama.cpp's convert_hf_to_gguf.py).
KNOWN_HASHES = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM(2)
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5-2.5
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}

#: Split regexes (tokenizer.json: Sequence[Split(regex, Isolated), ByteLevel(no regex)])
#: whose llama.cpp pre-tokenizer is known.
SPLIT_PATTERNS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
}


def check_hash(tokenizer: Any) -> str:
    """The converter's identifier of a tokenizer: SHA-256 of its tokens of CHECK_TEXT."""
    return hashlib.sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()


def pre_from_config(pre: Any) -> str | None:
    """llama.cpp's name for a tokenizer.json ``pre_tokenizer`` layout, or None if unknown."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # ByteLevel's own regex is GPT-2's
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if isinstance(parts, list) and len(parts) == 2:
        split, byte_level = parts
        pattern = (split.get("pattern") or {}).get("Regex")
        if (
            split.get("type") == "Split"
            and split.get("behavior") == "Isolated"
            and byte_level.get("type") == "ByteLevel"
            and not byte_level.get("use_regex", True)
        ):
            return SPLIT_PATTERNS.get(str(pattern))
    return None


def tokenizer_pre(tokenizer: Any, spec: dict[str, Any], where: Path) -> str:
    """The pre-tokenizer name for llama.cpp, by check hash, else by the tokenizer's config."""
    name = KNOWN_HASHES.get(check_hash(tokenizer)) or pre_from_config(spec.get("pre_tokenizer"))
    if name is None:
        layout = json.dumps(spec.get("pre_tokenizer"))[:120]
        raise DepthlensError(
            f"GGUF export: the pre-tokenizer of {where} ({layout}) is not one whose llama.cpp "
            "name depthlens knows; pass --tokenizer-pre NAME (llama.cpp's name for it)"
        )
    return name


def read_bpe_tokenizer(ckpt: Path) -> tuple[Any, dict[str, Any]]:
    """(the checkpoint's fast tokenizer, its tokenizer.json); refuses a non-BPE tokenizer."""
    tj = ckpt / "tokenizer.json"
    if not tj.is_file():
        raise DepthlensError(
            f"GGUF export needs {tj} (a fast BPE tokenizer) to embed the tokenizer; save the "
            "tokenizer with the checkpoint"
        )
    spec = json.loads(tj.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    decoder = (spec.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        raise DepthlensError(
            f"GGUF export writes byte-level BPE tokenizers (llama.cpp's 'gpt2' model); {tj} is "
            f"{model.get('type')} with a {decoder} decoder"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt), spec


def _looks_special(token: str) -> bool:
    return token.startswith("<|") and token.endswith("|>")


def bpe_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """(token per id, gguf token type per id) for ids 0..n-1, n covering model and tokenizer."""
    import gguf

    vocab: dict[str, int] = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # {id: AddedToken}
    n = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            special = added[i].special or _looks_special(by_id[i])
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def add_bpe_vocab(writer: Any, ckpt: Path, tokenizer: Any, vocab_size: int, pre: str) -> None:
    """Write ``tokenizer`` (that of checkpoint ``ckpt``) with pre-tokenizer ``pre``."""
    import gguf

    tokens, types = bpe_tokens(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(ckpt, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
