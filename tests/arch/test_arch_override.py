"""``--arch`` rescues a saved model whose automatic detection fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures_saved import save_tiny, write_text
from tiny_models import _LLAMA_KW, N_LAYERS, SEED, VOCAB, assert_tiny
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from depthlens.capture.hooks import capture_blocks
from depthlens.cli.main import main
from depthlens.errors import UnsupportedArchitectureError
from depthlens.metrics.lens import Lens
from depthlens.models import load_model

MODEL_TYPE = "depthlens_test_llamalike"


class LlamaLikeConfig(LlamaConfig):
    """A Llama layout under a model_type no depthlens table knows."""

    model_type = MODEL_TYPE


class LlamaLikeForCausalLM(LlamaForCausalLM):
    config_class = LlamaLikeConfig

    def __init__(self, config: LlamaLikeConfig) -> None:
        super().__init__(config)
        # A longer list of identical modules than the blocks: the generic fallback takes it
        # for the block list, finds no attention/MLP in it, and detection fails.
        self.scales = nn.ModuleList(nn.Identity() for _ in range(2 * N_LAYERS))


def _register() -> None:
    try:
        AutoConfig.register(MODEL_TYPE, LlamaLikeConfig)
        AutoModelForCausalLM.register(LlamaLikeConfig, LlamaLikeForCausalLM)
    except ValueError:  # already registered by an earlier test in this process
        pass


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _register()
    torch.manual_seed(SEED)
    model = LlamaLikeForCausalLM(LlamaLikeConfig(**_LLAMA_KW)).eval()
    assert_tiny(model, None)
    return save_tiny(tmp_path_factory.mktemp("llamalike"), model=model)


def test_detection_fails_without_arch(saved: Path) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="--arch"):
        load_model(str(saved))


def test_arch_llama_loads_and_reads_the_model_exactly(saved: Path) -> None:
    lm = load_model(str(saved), arch="llama")
    assert lm.arch.family == "llama" and lm.num_layers == N_LAYERS
    assert lm.arch.wiring.branch_multiplier == 1.0
    ids = torch.randint(3, VOCAB, (1, 8), generator=torch.Generator().manual_seed(0))
    with capture_blocks(lm.model, lm.arch, mlp=True) as trace, torch.no_grad():
        logits = lm.model(input_ids=ids, use_cache=False).logits  # (1, 8, V)
        states = trace.all_states()
        lens = Lens.of(lm.model, lm.arch).logits(states[-1][0])  # (8, V)
    torch.testing.assert_close(lens, logits[0], atol=1e-5, rtol=0)
    for l in range(N_LAYERS):
        a, m = trace.attn[l], trace.mlp[l]
        assert a is not None and m is not None
        torch.testing.assert_close(states[l + 1] - states[l], a + m, atol=1e-5, rtol=0)


def test_cli_arch_option_rescues_the_model(saved: Path, tmp_path: Path) -> None:
    text = write_text(tmp_path / "t.txt", 400)
    common = [
        "--data",
        str(text),
        "--seq-len",
        "16",
        "--max-tokens",
        "64",
        "--quiet",
        "--lens-kernel",
        "eager",
    ]
    out = tmp_path / "p.json"
    assert main(["profile", str(saved), *common, "-o", str(out)]) == 2  # detection fails
    assert not out.exists()
    assert main(["profile", str(saved), *common, "--arch", "llama", "-o", str(out)]) == 0
    prof = json.loads(out.read_text())
    assert prof["model"]["family"] == "llama"
    assert len(prof["metrics"]["rel_contrib_block"]) == N_LAYERS
