"""The architecture table against the real HF modules of tiny random models.

The key test is semantic: hooking the spec's ``attn`` and ``mlp`` modules of every block
must give what each sublayer adds to the residual stream, h_{l+1} = h_l + a_l + m_l.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from tiny_models import EXPECTED_FAMILY, N_LAYERS, TINY_FAMILIES, VOCAB, assert_tiny, tiny_model
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from depthlens.arch.spec import (
    FAMILIES,
    ArchSpec,
    blocks_of,
    generic_spec,
    get_submodule,
    resolve_arch,
)
from depthlens.errors import UnsupportedArchitectureError

ATOL = 1e-5
BATCH, SEQ = 2, 8


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def _record(modules: dict[str, nn.Module]) -> Iterator[dict[str, dict[str, Any]]]:
    """Record each module's positional args, kwargs and output during the block."""
    seen: dict[str, dict[str, Any]] = {}
    handles = []

    def make_hook(key: str):
        def hook(_mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            seen[key] = {"args": args, "kwargs": kwargs, "out": _first(out)}

        return hook

    try:
        for key, mod in modules.items():
            handles.append(mod.register_forward_hook(make_hook(key), with_kwargs=True))
        yield seen
    finally:
        for h in handles:
            h.remove()


def _block_input(rec: dict[str, Any]) -> torch.Tensor:
    return rec["kwargs"]["hidden_states"] if "hidden_states" in rec["kwargs"] else rec["args"][0]


def _inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=gen)
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    mask[1, -3:] = 0  # right padding: no query row is fully masked under a causal mask
    return {"input_ids": ids, "attention_mask": mask}


def _run(model: nn.Module, spec: ArchSpec) -> tuple[list[dict], Any]:
    """Forward once, returning per-block records {block, attn, mlp} and the model output."""
    blocks = blocks_of(model, spec)
    modules: dict[str, nn.Module] = {}
    for i, block in enumerate(blocks):
        modules[f"{i}.block"] = block
        modules[f"{i}.attn"] = get_submodule(block, spec.attn)
        modules[f"{i}.mlp"] = get_submodule(block, spec.mlp)
    with _record(modules) as seen, torch.no_grad():
        out = model(**_inputs())
    assert len(seen) == len(modules), f"not every hooked module ran: {sorted(seen)}"
    layers = [{k: seen[f"{i}.{k}"] for k in ("block", "attn", "mlp")} for i in range(len(blocks))]
    return layers, out


def _check_residual_decomposition(model: nn.Module, spec: ArchSpec) -> Any:
    layers, out = _run(model, spec)
    for i, rec in enumerate(layers):
        h = _block_input(rec["block"])  # (B, T, C)
        h_next = rec["block"]["out"]  # (B, T, C)
        mult = spec.wiring.branch_multiplier  # Granite scales each branch before the add
        attn_out, mlp_out = rec["attn"]["out"], rec["mlp"]["out"]
        if spec.attn_mode == "add":
            attn_out, mlp_out = attn_out * mult, mlp_out * mult
        a = attn_out - h if spec.attn_mode == "stream" else attn_out
        if spec.mlp_mode == "stream":
            # The MLP half must read the post-attention stream, and its output is h_{l+1}.
            mlp_inputs = list(rec["mlp"]["args"]) + list(rec["mlp"]["kwargs"].values())
            assert any(
                isinstance(x, torch.Tensor) and x.shape == h.shape and torch.allclose(x, h + a)
                for x in mlp_inputs
            ), f"block {i}: the '{spec.mlp}' module does not read the post-attention stream"
            torch.testing.assert_close(h_next, mlp_out, atol=ATOL, rtol=0)
        else:
            torch.testing.assert_close(
                h_next, h + a + mlp_out, atol=ATOL, rtol=0, msg=f"block {i}: h != h + a + m"
            )
        if i + 1 < len(layers):  # blocks are chained: nothing sits between them
            torch.testing.assert_close(_block_input(layers[i + 1]["block"]), h_next)
    return layers, out


def _check_logit_lens(model: nn.Module, spec: ArchSpec, layers: list[dict], out: Any) -> None:
    assert spec.final_norm is not None and spec.unembed is not None
    final_norm = get_submodule(model, spec.final_norm)
    unembed = get_submodule(model, spec.unembed)
    with torch.no_grad():
        logits = unembed(final_norm(layers[-1]["block"]["out"]))  # (B, T, V)
    # Granite divides the logits; Gemma 2/3 CausalLM cap them (the multimodal wrapper does not).
    logits = logits / spec.wiring.logit_scale
    cap = spec.wiring.logit_softcap
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    torch.testing.assert_close(logits, out.logits, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- per-family table checks


@pytest.fixture(params=sorted(TINY_FAMILIES), scope="module")
def family_model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    return request.param, tiny_model(request.param)


def test_resolves_to_intended_family(family_model: tuple[str, nn.Module]) -> None:
    name, model = family_model
    assert resolve_arch(model).family == EXPECTED_FAMILY[name]


def test_every_path_resolves(family_model: tuple[str, nn.Module]) -> None:
    _, model = family_model
    spec = resolve_arch(model)
    for path in (spec.blocks, spec.final_norm, spec.unembed):
        if path is not None:
            get_submodule(model, path)
    for block in blocks_of(model, spec):
        for path in (spec.attn, spec.mlp, spec.mlp_out_proj):
            if path is not None:
                get_submodule(block, path)
    if spec.mlp_out_proj is not None:
        proj = get_submodule(blocks_of(model, spec)[0], spec.mlp_out_proj)
        assert isinstance(proj.weight, torch.Tensor)  # a Linear or GPT-2 Conv1D


def test_block_count_matches_config(family_model: tuple[str, nn.Module]) -> None:
    _, model = family_model
    assert len(blocks_of(model, resolve_arch(model))) == model.config.num_hidden_layers


def test_residual_decomposition(family_model: tuple[str, nn.Module]) -> None:
    _, model = family_model
    _check_residual_decomposition(model, resolve_arch(model))


def test_logit_lens_reproduces_logits(family_model: tuple[str, nn.Module]) -> None:
    _, model = family_model
    spec = resolve_arch(model)
    if not spec.has_lens:
        assert not spec.causal  # only the encoder family is allowed to lack a lens
        pytest.skip(f"{spec.family} has no logit lens")
    layers, out = _run(model, spec)
    _check_logit_lens(model, spec, layers, out)


def test_every_family_has_a_fixture() -> None:
    assert set(EXPECTED_FAMILY.values()) == set(FAMILIES)


def test_gemma3_fixture_has_local_global_pattern() -> None:
    config = tiny_model("gemma3").config
    assert config.layer_types == ["sliding_attention"] * 5 + ["full_attention"]
    assert config.sliding_window < SEQ


# ---------------------------------------------------------------- generic fallback, errors


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_generic_spec_matches_the_table(name: str) -> None:
    model = tiny_model(name)
    spec = resolve_arch(model, "generic")
    table = resolve_arch(model)
    assert spec.family == "generic"
    assert (spec.blocks, spec.attn, spec.mlp, spec.mlp_out_proj) == (
        table.blocks,
        table.attn,
        table.mlp,
        table.mlp_out_proj,
    )
    assert (spec.final_norm, spec.unembed) == (table.final_norm, table.unembed)
    assert spec == generic_spec(model)
    layers, out = _check_residual_decomposition(model, spec)
    _check_logit_lens(model, spec, layers, out)


@pytest.mark.parametrize("name", ["weird", "weird_blocks"])
def test_unsupported_architecture_says_what_to_pass(name: str) -> None:
    model = tiny_model(name)
    with pytest.raises(UnsupportedArchitectureError, match="--arch") as err:
        resolve_arch(model)
    assert "weird" in str(err.value)  # names the model_type it could not handle


def test_unknown_family_lists_families() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="'nope'") as err:
        resolve_arch(tiny_model("llama"), "nope")
    for family in [*FAMILIES, "generic"]:
        assert family in str(err.value)


def test_forced_family_with_wrong_layout_raises() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="--arch generic"):
        resolve_arch(tiny_model("gpt2"), "gpt_neox")


def test_bare_base_model_resolves_without_head() -> None:
    model = tiny_model("llama_base")
    spec = resolve_arch(model)
    assert (spec.family, spec.blocks, spec.final_norm) == ("llama", "layers", "norm")
    assert spec.unembed is None and not spec.has_lens
    assert len(blocks_of(model, spec)) == N_LAYERS
    _check_residual_decomposition(model, spec)


def test_multimodal_gemma3_finds_nested_text_model() -> None:
    model = tiny_model("gemma3_multimodal")
    spec = resolve_arch(model)
    assert spec.family == "gemma2"
    assert (spec.blocks, spec.final_norm, spec.unembed) == (
        "model.language_model.layers",
        "model.language_model.norm",
        "lm_head",
    )
    assert len(blocks_of(model, spec)) == model.config.text_config.num_hidden_layers
    layers, out = _check_residual_decomposition(model, spec)
    _check_logit_lens(model, spec, layers, out)


def test_assert_tiny_catches_misspelled_config() -> None:
    # "n_layers" is not a GPT-2 key: transformers keeps it as an attribute and builds the
    # default 12 layers. (Small n_embd keeps this test fast; the layer count still trips.)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_head=4, n_layers=N_LAYERS)
    with pytest.raises(AssertionError, match="12"):
        assert_tiny(GPT2LMHeadModel(config), N_LAYERS)
