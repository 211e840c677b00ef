"""Tuned lens (Belrose et al. 2023): identity at step 0, the translator formula, save/load."""

from __future__ import annotations

import pytest
import torch
from conftest import wrap_tiny
from safetensors.torch import load_file, save_file

from depthlens.errors import DepthlensError
from depthlens.metrics.lens import Lens
from depthlens.results import Envelope
from depthlens.tuned.lens import WEIGHTS, TunedLens, load_lens, readout_for, save_lens
from depthlens.tuned.result import LensTraining
from depthlens.tuned.train import kl_from_logits


def _states(lm, n: int = 12) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    d = lm.model.config.hidden_size
    return [torch.randn(n, d, generator=gen) * (1 + l) for l in range(lm.num_layers + 1)]


def test_step0_tuned_lens_equals_logit_lens_exactly() -> None:
    lm = wrap_tiny("llama")
    tuned = TunedLens.for_model(lm)
    logit = Lens.of(lm.model, lm.arch)
    with torch.no_grad():
        for l, h in enumerate(_states(lm)):
            assert torch.equal(tuned.logits(h, l), logit.logits(h))


def test_translator_is_added_to_the_stream_before_norm_and_unembedding() -> None:
    lm = wrap_tiny("llama")
    tuned = TunedLens.for_model(lm)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in tuned.translators:
            t.weight.copy_(torch.randn(t.weight.shape, generator=gen) * 0.1)
            t.bias.copy_(torch.randn(t.bias.shape, generator=gen))
        for l, h in enumerate(_states(lm)[:-1]):
            a, b = tuned.translators[l].weight, tuned.translators[l].bias
            x = h + h @ a.T + b
            # Naive: the model's own final RMSNorm and head, written out.
            norm = lm.model.model.norm
            xn = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
            want = (xn * norm.weight) @ lm.model.lm_head.weight.T
            torch.testing.assert_close(tuned.logits(h, l), want, rtol=1e-4, atol=1e-4)
        h_last = _states(lm)[-1]
        assert torch.equal(
            tuned.logits(h_last, lm.num_layers), Lens.of(lm.model, lm.arch).logits(h_last)
        )


def test_kl_from_logits_value_and_gradient_match_autograd() -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, 5, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    logp = torch.log_softmax(torch.randn(5, 7, dtype=torch.float64, generator=gen), -1)
    p = logp.exp()
    kl = kl_from_logits(z, logp, p)
    naive = (p * (logp - torch.log_softmax(z, -1))).sum(-1)
    torch.testing.assert_close(kl, naive)
    w = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    (g1,) = torch.autograd.grad((kl * w).sum(), z)
    (g2,) = torch.autograd.grad((naive * w).sum(), z)
    torch.testing.assert_close(g1, g2)


def _saved(tmp_path, lm):
    tuned = TunedLens.for_model(lm)
    with torch.no_grad():
        for t in tuned.translators:
            t.bias.fill_(0.25)
    env = Envelope(kind="depthlens.tuned_lens", model=lm.identity())
    save_lens(tuned, tmp_path, env, LensTraining(steps=0))
    return tuned


def test_save_and_load_round_trip(tmp_path) -> None:
    lm = wrap_tiny("llama")
    tuned = _saved(tmp_path, lm)
    loaded, info = load_lens(tmp_path, lm)
    for a, b in zip(tuned.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert info["kind"] == "tuned"
    readout, _ = readout_for(lm, f"tuned:{tmp_path}")
    h = _states(lm)[2]
    assert torch.equal(readout.logits(h, 2), tuned.logits(h, 2))


def test_lens_of_another_model_is_refused(tmp_path) -> None:
    _saved(tmp_path, wrap_tiny("llama"))
    with pytest.raises(DepthlensError, match="different models"):
        load_lens(tmp_path, wrap_tiny("qwen2"))


def test_lens_folder_missing_a_layer_is_refused(tmp_path) -> None:
    lm = wrap_tiny("llama")
    _saved(tmp_path, lm)
    state = load_file(str(tmp_path / WEIGHTS))
    del state["translators.2.weight"]
    save_file(state, str(tmp_path / WEIGHTS))
    with pytest.raises(DepthlensError, match="layer 2"):
        load_lens(tmp_path, lm)


@pytest.mark.parametrize("spec", ["tuned:/no/such/dir", "tunde:x", "logits"])
def test_bad_lens_argument_is_one_error(spec: str) -> None:
    with pytest.raises(DepthlensError):
        readout_for(wrap_tiny("llama"), spec)
