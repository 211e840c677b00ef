"""Early-exit decoding over every family fixture: exact where it decodes, refused where not.

Each family with a KV cache decodes exactly like ``generate`` when the rule never fires,
and its attention-only K/V fill (the spec's attention module on its input norm of h_e)
writes the very keys and values that running the whole skipped block on h_e writes. A
family without a KV cache is refused with the reason, before any token is decoded.
"""

from __future__ import annotations

import pytest
import torch
from conftest import wrap_tiny
from tiny_models import TINY_FAMILIES

from depthlens.arch.kv import cache_refusal
from depthlens.errors import DepthlensError
from depthlens.exit.decode import greedy_decode
from depthlens.exit.rules import ExitRule
from depthlens.models.loading import LoadedModel
from depthlens.tuned.lens import readout_for

PROMPT = torch.tensor([[1, 5, 9, 17, 33, 64]])
DECODING = sorted(n for n in TINY_FAMILIES if cache_refusal(wrap_tiny(n).arch) is None)
REFUSED = sorted(set(TINY_FAMILIES) - set(DECODING))
# Sliding and global attention layers take different masks and rotary embeddings.
MIXED_KINDS = {"gemma2", "gemma3"}


def test_the_fixtures_cover_both_sides() -> None:
    assert {"llama", "gpt2", "gpt_neox", "phi", "gemma3", "olmo2"} <= set(DECODING)
    assert {"bert", "roberta", "lab_post_ln"} <= set(REFUSED)


def _plain_generate(lm: LoadedModel, n: int) -> list[int]:
    out = lm.model.generate(
        input_ids=PROMPT,
        attention_mask=torch.ones_like(PROMPT),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, PROMPT.shape[1] :].tolist()


@pytest.mark.parametrize("name", DECODING)
def test_a_rule_that_never_fires_decodes_like_generate(name: str) -> None:
    lm = wrap_tiny(name)
    lens, _ = readout_for(lm, "logit")
    res = greedy_decode(lm, PROMPT, 6, lens, ExitRule("confidence", 1.0))
    assert res.tokens == _plain_generate(lm, 6), name
    assert res.exit_depths == [lm.num_layers] * 6


@pytest.mark.parametrize("name", sorted(set(DECODING) - MIXED_KINDS))
def test_attention_fill_writes_what_the_whole_block_writes(name: str) -> None:
    lm = wrap_tiny(name)
    lens, _ = readout_for(lm, "logit")
    always = ExitRule("confidence", 1e-9)  # every decoded token exits at depth 1
    a = greedy_decode(lm, PROMPT, 3, lens, always, kv_fill="attention")
    b = greedy_decode(lm, PROMPT, 3, lens, always, kv_fill="block")
    assert a.kv_fill == "attention" and b.kv_fill == "block"
    assert a.tokens == b.tokens and a.exit_depths == b.exit_depths == [lm.num_layers, 1, 1]
    for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
        torch.testing.assert_close(la.keys, lb.keys, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(la.values, lb.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MIXED_KINDS))
def test_mixed_attention_kinds_fill_by_block(name: str) -> None:
    lm = wrap_tiny(name)
    lens, _ = readout_for(lm, "logit")
    always = ExitRule("confidence", 1e-9)
    with pytest.raises(DepthlensError, match="mixes attention kinds"):
        greedy_decode(lm, PROMPT, 2, lens, always, kv_fill="attention")
    res = greedy_decode(lm, PROMPT, 3, lens, always)
    assert res.kv_fill == "block" and res.exit_depths == [lm.num_layers, 1, 1]
    # every skipped block wrote the decoded positions, as full decoding does
    full = greedy_decode(lm, PROMPT, 3, lens, ExitRule("confidence", 1.0))
    for got, want in zip(res.cache.layers, full.cache.layers, strict=True):
        assert got.keys.shape == want.keys.shape


@pytest.mark.parametrize("name", REFUSED)
def test_a_family_without_a_kv_cache_is_refused_with_the_reason(name: str) -> None:
    lm = wrap_tiny(name)
    why = cache_refusal(lm.arch)
    assert why is not None and lm.arch.family in why
    with pytest.raises(DepthlensError, match="cannot decode") as err:
        greedy_decode(lm, PROMPT, 2)
    assert why in str(err.value)
