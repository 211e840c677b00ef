"""The sublayer facts of every family against the real HF modules of its tiny model.

``attn_module`` must be called on ``attn_norm(h_l)`` and ``mlp_module`` on ``mlp_norm`` of
the stream it reads (h_l when parallel, else h_l + a_l): checked by hooking both during a
forward. The LoRA targets must be every linear of a block, each once, split by sublayer.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny_models import TINY_FAMILIES, VOCAB, tiny_model
from torch import nn
from transformers import AutoConfig
from transformers.pytorch_utils import Conv1D

from depthlens.arch.spec import FAMILIES, ArchSpec, blocks_of, is_causal_lm, resolve_arch
from depthlens.capture.hooks import hooks

ATOL = 1e-5


@pytest.fixture(params=sorted(TINY_FAMILIES), scope="module")
def family_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    return request.param, tiny_model(request.param)


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


def _input(args: tuple, kwargs: dict) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _record(block: nn.Module, spec: ArchSpec) -> dict[str, dict[str, torch.Tensor]]:
    """Inputs and outputs of the block and its sublayer modules during one forward."""
    names = {"block": "", "attn": spec.attn, "attn_module": spec.attn_module}
    names["mlp_module"] = spec.mlp_module
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def register() -> list[Any]:
        out = []
        for key, path in names.items():
            if path is None:
                continue

            def hook(_m: nn.Module, args: tuple, kwargs: dict, res: Any, key: str = key) -> None:
                seen[key] = {"in": _input(args, kwargs), "out": _first(res)}

            out.append(block.get_submodule(path).register_forward_hook(hook, with_kwargs=True))
        return out

    return seen, register  # type: ignore[return-value]


def _norm(block: nn.Module, path: str | None, x: torch.Tensor) -> torch.Tensor:
    return x if path is None else block.get_submodule(path)(x)


def test_sublayer_modules_read_their_norm_of_the_stream(family_model: Any) -> None:
    _, model = family_model
    spec = resolve_arch(model)
    block = blocks_of(model, spec)[1]
    seen, register = _record(block, spec)
    ids = torch.randint(3, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    with hooks(register), torch.no_grad():
        model(input_ids=ids)
        h = seen["block"]["in"]  # (B, T, C)
        assert spec.attn_module is not None  # every table family names its attention
        torch.testing.assert_close(seen["attn_module"]["in"], _norm(block, spec.attn_norm, h))
        if spec.mlp_module is None:
            assert spec.family == "bert"  # BERT's MLP is two modules
            return
        a = seen["attn"]["out"]
        a = a - h if spec.attn_mode == "stream" else a * spec.wiring.branch_multiplier
        stream = h if spec.wiring.parallel else h + a
        want = _norm(block, spec.mlp_norm, stream)
        torch.testing.assert_close(seen["mlp_module"]["in"], want, atol=ATOL, rtol=0)


def _block_linears(block: nn.Module) -> set[str]:
    return {n for n, m in block.named_modules() if isinstance(m, nn.Linear | Conv1D)}


def test_lora_targets_are_every_linear_of_a_block_once(family_model: Any) -> None:
    _, model = family_model
    spec = resolve_arch(model)
    targets = spec.lora_targets
    assert len(targets) == len(set(targets)) and spec.attn_linears and spec.mlp_linears
    for block in blocks_of(model, spec):
        assert set(targets) == _block_linears(block), spec.family


def test_sublayer_linears_belong_to_their_sublayer(family_model: Any) -> None:
    _, model = family_model
    spec = resolve_arch(model)
    block = blocks_of(model, spec)[0]
    attn = block.get_submodule(spec.attn_module or spec.attn)
    for name in spec.attn_linears:
        inside = any(m is block.get_submodule(name) for m in attn.modules())
        # BERT's attention output projection sits in attention.output, beside attention.self
        assert inside or name == "attention.output.dense", name
    if spec.mlp_module is not None:
        mlp = block.get_submodule(spec.mlp_module)
        assert all(
            any(m is block.get_submodule(n) for m in mlp.modules()) for n in spec.mlp_linears
        )


@pytest.mark.parametrize("name", ["llama", "gpt2", "phi3", "gpt_neox_sequential"])
def test_generic_fallback_finds_the_same_sublayers(name: str) -> None:
    model = tiny_model(name)
    got, table = resolve_arch(model, "generic"), resolve_arch(model)
    for field in ("attn_module", "attn_norm", "mlp_module", "mlp_norm", "cache_index_attr"):
        assert getattr(got, field) == getattr(table, field), field
    assert set(got.attn_linears) == set(table.attn_linears)
    assert set(got.mlp_linears) == set(table.mlp_linears)


def test_every_table_family_fills_the_new_fields() -> None:
    for spec in FAMILIES.values():
        assert spec.attn_module and spec.attn_linears and spec.mlp_linears, spec.family
        assert (spec.cache_index_attr is None) == (spec.family in ("bert", "depthlens_lab"))


@pytest.mark.parametrize(
    "model_type, family, causal",
    [
        ("llama", None, True),
        ("bert", None, False),
        ("roberta", None, False),
        ("bert", "generic", False),
        ("gpt2", None, True),
        ("llama", "bert", False),
    ],
)
def test_encoder_or_causal_comes_from_the_spec(model_type, family, causal) -> None:
    config = AutoConfig.for_model(model_type)
    assert is_causal_lm(config, family) is causal


def test_unknown_model_type_loads_causal_unless_encoder_decoder() -> None:
    class Cfg:
        model_type = "never_heard_of"
        is_encoder_decoder = False

    assert is_causal_lm(Cfg())
    Cfg.is_encoder_decoder = True
    assert not is_causal_lm(Cfg())
