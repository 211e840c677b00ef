"""Greedy decoding with early exit on the real HF modules (CALM state propagation)."""

from __future__ import annotations

import torch
from conftest import wrap_tiny

from depthlens.capture.hooks import capture_blocks
from depthlens.exit.decode import greedy_decode
from depthlens.exit.rules import ExitRule
from depthlens.tuned.lens import readout_for

PROMPT = torch.tensor([[1, 5, 9, 17, 33, 64]])


def test_a_rule_that_never_fires_equals_plain_greedy_generate() -> None:
    lm = wrap_tiny("llama")
    lens, _ = readout_for(lm, "logit")
    never = greedy_decode(lm, PROMPT, 12, lens, ExitRule("confidence", 1.0))
    plain = lm.model.generate(
        input_ids=PROMPT,
        attention_mask=torch.ones_like(PROMPT),
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
    )
    assert never.tokens == plain[0, PROMPT.shape[1] :].tolist()
    assert never.exit_depths == [lm.num_layers] * 12
    assert greedy_decode(lm, PROMPT, 12).tokens == never.tokens


def test_skipped_blocks_get_kv_of_the_exit_state() -> None:
    lm = wrap_tiny("llama")
    lens, _ = readout_for(lm, "logit")
    always = ExitRule("confidence", 1e-9)  # fires at depth 1 for every decoded token
    res = greedy_decode(lm, PROMPT, 2, lens, always)
    assert res.exit_depths == [lm.num_layers, 1]
    # h_1 of the exited position, from a plain forward over prompt + first token.
    seq = torch.cat([PROMPT, torch.tensor([[res.tokens[0]]])], dim=1)
    with capture_blocks(lm.model, lm.arch, attn=False) as trace, torch.no_grad():
        lm.model(input_ids=seq)
        h1 = trace.states[1][0, -1]
    pos = seq.shape[1] - 1
    for j in range(1, lm.num_layers):
        blk = lm.model.model.layers[j]
        with torch.no_grad():
            v = blk.self_attn.v_proj(blk.input_layernorm(h1))  # (kv_heads * head_dim,)
        cached = res.cache.layers[j].values[0, :, pos, :].reshape(-1)
        torch.testing.assert_close(cached, v, rtol=1e-5, atol=1e-5)
    # Block 0 ran normally: its cache holds K/V of its real input, not of h_1.
    blk0 = lm.model.model.layers[0]
    with torch.no_grad():
        v1 = blk0.self_attn.v_proj(blk0.input_layernorm(h1))
    assert not torch.allclose(res.cache.layers[0].values[0, :, pos, :].reshape(-1), v1)


def test_block_and_attention_fill_agree() -> None:
    lm = wrap_tiny("llama")
    lens, _ = readout_for(lm, "logit")
    rule = ExitRule("settled", 1)
    a = greedy_decode(lm, PROMPT, 10, lens, rule, kv_fill="attention")
    b = greedy_decode(lm, PROMPT, 10, lens, rule, kv_fill="block")
    assert a.kv_fill == "attention" and b.kv_fill == "block"
    assert a.tokens == b.tokens and a.exit_depths == b.exit_depths
    assert min(a.exit_depths) < lm.num_layers  # some tokens did exit early
