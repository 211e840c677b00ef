"""Every scheme's saved checkpoint gives the training model's logits (≤ 1e-5 relative)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthlens.models.loading import load_model
from depthlens.train.export import export_model
from depthlens.train.model import LabConfig, LabForCausalLM, init_lab_weights_
from depthlens.train.schemes import SCHEMES
from depthlens.train.tokenizer import train_tokenizer

DOCS = ["the cat sat on the mat. " * 20, "a dog ran in the park, and the cat slept. " * 20]


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return train_tokenizer(DOCS, vocab_size=300)


def trained_like(scheme: str, vocab: int) -> LabForCausalLM:
    """A tiny lab model with every scale away from its init (as after training)."""
    cfg = LabConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        scheme=scheme,
        eos_token_id=0,
        bos_token_id=0,
    )
    m = LabForCausalLM(cfg)
    init_lab_weights_(m, 3)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith((".gate", "norm.weight")):
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 0.5)
    assert sum(p.numel() for p in m.parameters()) < 30_000
    return m.eval()


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_saved_checkpoint_logits_equal(scheme: str, tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    lab = trained_like(scheme, len(tokenizer))
    cls = export_model(lab, tokenizer, tmp_path)
    lm = load_model(str(tmp_path))
    want_cls = "LlamaForCausalLM" if SCHEMES[scheme].exports_as_llama else "LabForCausalLM"
    assert cls == want_cls == type(lm.model).__name__
    assert lm.arch.family == ("llama" if SCHEMES[scheme].exports_as_llama else "depthlens_lab")
    ids = torch.randint(0, len(tokenizer), (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = lab(input_ids=ids).logits
        b = lm.model(input_ids=ids).logits
    rel = float((a - b).norm() / a.norm())
    assert rel <= 1e-5, rel
    assert float((a - b).abs().max() / a.abs().max()) <= 1e-5


def test_post_norm_family_is_post() -> None:
    from depthlens.arch.spec import resolve_arch

    spec = resolve_arch(trained_like("deepnorm", 50))
    assert spec.family == "depthlens_lab"
    assert spec.wiring.norm == "post"


@pytest.mark.parametrize("scheme", ["deepnorm", "post-ln"])
def test_cut_lab_model_reloads_exactly(scheme: str, tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    """A lab model with block 1 removed, saved and reloaded, computes what the cut one did."""
    from depthlens.cut.apply import remove_blocks_

    lab = trained_like(scheme, len(tokenizer))
    lab.config.scheme_depth, lab.config.block_index = 3, [1, 2, 3]
    export_model(lab, tokenizer, tmp_path / "full")
    lm = load_model(str(tmp_path / "full"))
    remove_blocks_(lm, (1,))
    assert lm.model.config.block_index == [1, 3] and lm.model.config.scheme_depth == 3
    lm.model.save_pretrained(tmp_path / "cut")
    tokenizer.save_pretrained(tmp_path / "cut")
    again = load_model(str(tmp_path / "cut"))
    ids = torch.randint(0, len(tokenizer), (1, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(
            again.model(input_ids=ids).logits, lm.model(input_ids=ids).logits
        )
    assert again.model.model.layers[1].attention.alpha == lab.model.layers[2].attention.alpha
