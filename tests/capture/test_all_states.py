"""BlockTrace.all_states: every h_0..h_L in order, or an error (never a shifted list)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.capture.hooks import capture_blocks, run_forward


def test_complete_trace_gives_states_in_order() -> None:
    lm = wrap_tiny("llama")
    data = random_windows(n=2, seq_len=8)
    with capture_blocks(lm.model, lm.arch, attn=False) as trace, torch.no_grad():
        out = lm.model(
            input_ids=data.input_ids, attention_mask=data.attention_mask, output_hidden_states=True
        )
        states = trace.all_states()
    assert len(states) == lm.num_layers + 1
    # HF's hidden_states[l] is h_l for l < L (the last one is after the final norm).
    for l in range(lm.num_layers):
        torch.testing.assert_close(states[l], out.hidden_states[l], rtol=0, atol=0)


def test_stopped_forward_is_an_error_not_a_shorter_list() -> None:
    lm = wrap_tiny("llama")
    data = random_windows(n=1, seq_len=8)
    with capture_blocks(lm.model, lm.arch, attn=False, stop_after=1) as trace, torch.no_grad():
        run_forward(lm.model, data.input_ids, data.attention_mask)
        assert trace.states[2] is not None and trace.states[3] is None
        with pytest.raises(RuntimeError, match=r"states \[3"):
            trace.all_states()
