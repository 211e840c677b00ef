"""``--lens tuned:DIR`` on the profile: every lens metric read through the tuned lens."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.errors import DepthlensError
from depthlens.profiling import ProfileOptions, profile
from depthlens.results import Envelope
from depthlens.tuned.evaluate import compare_lenses
from depthlens.tuned.lens import TunedLens, readout_for, save_lens


def _lens_dir(tmp_path, lm, bias: float):
    tuned = TunedLens.for_model(lm)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for t in tuned.translators:
            t.weight.copy_(torch.randn(t.weight.shape, generator=gen) * 0.05)
            t.bias.fill_(bias)
    save_lens(tuned, tmp_path, Envelope(kind="depthlens.tuned_lens", model=lm.identity()))
    return tuned


def test_profile_with_tuned_lens_matches_direct_computation(tmp_path) -> None:
    lm = wrap_tiny("llama")
    data = random_windows(n=4, seq_len=12)
    tuned = _lens_dir(tmp_path, lm, bias=0.3)
    opts = dict(lens_tokens=None, lens_kernel="eager", batch_size=2)
    prof_t = profile(
        lm, data, ProfileOptions(lens_readout=f"tuned:{tmp_path}", **opts), progress=False
    )
    prof_l = profile(lm, data, ProfileOptions(**opts), progress=False)
    sums = compare_lenses(
        lm, data, {"tuned": tuned, "logit": readout_for(lm, "logit")[0]}, progress=False
    )
    direct = {name: s.means() for name, s in sums.items()}
    for name, prof in (("tuned", prof_t), ("logit", prof_l)):
        for metric in ("lens_kl", "lens_top1_agree", "lens_ce"):
            assert prof.metrics[metric] == pytest.approx(
                direct[name][metric], rel=1e-4, abs=1e-6
            ), (name, metric)
    assert prof_t.metrics["lens_kl"] != pytest.approx(prof_l.metrics["lens_kl"])
    assert prof_t.summary["lens_readout"]["kind"] == "tuned"
    assert prof_t.options["lens_readout"] == f"tuned:{tmp_path}"


def test_profile_refuses_a_bad_lens_before_running(tmp_path) -> None:
    with pytest.raises(DepthlensError, match="not found"):
        ProfileOptions(lens_readout=f"tuned:{tmp_path / 'nope'}").validate()
    with pytest.raises(DepthlensError, match="did you mean"):
        ProfileOptions(lens_readout="tuned").validate()


def _jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    m = 0.5 * (p + q)
    return 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)


def test_settling_depth_reads_the_tuned_lens(tmp_path) -> None:
    from depthlens.causal.think import ThinkOptions, depth_jsd

    lm = wrap_tiny("llama")
    tuned = _lens_dir(tmp_path, lm, bias=0.3)
    ids = torch.tensor([[1, 5, 9, 17, 33, 40]])
    got = depth_jsd(lm, ids, lens=tuned)  # (T, L)
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_hidden_states=True)
        p = torch.softmax(out.logits[0].float(), -1)
        for l in range(1, lm.num_layers):
            q = torch.softmax(tuned.logits(out.hidden_states[l][0], l), -1)
            torch.testing.assert_close(got[:, l - 1], _jsd(p, q), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, depth_jsd(lm, ids))  # the logit lens reads otherwise
    with pytest.raises(DepthlensError):
        ThinkOptions(lens="tuned:/no/such/folder").validate()
