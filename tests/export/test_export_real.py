"""The pre-tokenizer of the real packaged tokenizers, found as llama.cpp's converter finds it.

SmolLM2's tokenizer.json says only "ByteLevel" (as GPT-2's does); its llama.cpp name,
"smollm", comes from the check hash of its tokens. Qwen2.5-Coder's hash is Qwen2's.
Only the tokenizers are loaded (the e2e tier, because the packaged files are needed).
"""

from __future__ import annotations

import pytest

from depthlens.export.gguf_vocab import KNOWN_HASHES, check_hash, read_bpe_tokenizer, tokenizer_pre
from depthlens.models.loading import ensure_packaged
from depthlens.models.registry import PACKAGED
from depthlens.paths import default_cache_dir


@pytest.mark.e2e
@pytest.mark.parametrize(
    "name, want", [("smollm2-135m", "smollm"), ("qwen2.5-coder-0.5b", "qwen2")]
)
def test_real_tokenizers_get_llama_cpps_pre_tokenizer(name: str, want: str) -> None:
    ck = ensure_packaged(PACKAGED[name], default_cache_dir())
    tokenizer, spec = read_bpe_tokenizer(ck)
    assert KNOWN_HASHES[check_hash(tokenizer)] == want
    assert tokenizer_pre(tokenizer, spec, ck) == want
