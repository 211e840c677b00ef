"""For parallel blocks (GPT-NeoX, Phi) the MLP's reference stream is h_l, not h_l + a_l."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.capture.hooks import capture_blocks
from depthlens.profiling import ProfileOptions, profile


@pytest.mark.parametrize(("name", "parallel"), [("gpt_neox", True), ("gpt_neox_sequential", False)])
def test_rel_contrib_mlp_reads_the_stream_the_mlp_reads(name: str, parallel: bool) -> None:
    lm = wrap_tiny(name)
    assert lm.arch.wiring.parallel is parallel
    data = random_windows(n=3, seq_len=10)
    prof = profile(lm, data, ProfileOptions(lens=False), progress=False)
    valid = data.attention_mask.bool().clone()
    valid[:, 0] = False
    with capture_blocks(lm.model, lm.arch) as tr, torch.no_grad():
        lm.model(input_ids=data.input_ids, attention_mask=data.attention_mask)
    for l in range(lm.num_layers):
        h = tr.states[l][valid].double()
        a = tr.attn[l][valid].double()
        m = tr.states[l + 1][valid].double() - h - a
        ref = h if parallel else h + a
        want = (m.norm(dim=-1) / ref.norm(dim=-1)).mean().item()
        assert prof.metrics["rel_contrib_mlp"][l] == pytest.approx(want, rel=1e-5), l
