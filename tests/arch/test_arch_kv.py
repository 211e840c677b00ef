"""The KV-cache layout of every causal family against the cache transformers really builds."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_FAMILIES, VOCAB, tiny_model
from transformers import DynamicCache

from depthlens.arch.kv import cache_kwarg, cache_refusal, kv_layout
from depthlens.arch.spec import blocks_of, resolve_arch
from depthlens.errors import UnsupportedArchitectureError

CACHED = sorted(n for n in TINY_FAMILIES if resolve_arch(tiny_model(n)).cache_index_attr)


@pytest.mark.parametrize("name", CACHED)
def test_each_block_writes_the_cache_layer_the_layout_names(name: str) -> None:
    model = tiny_model(name)
    spec = resolve_arch(model)
    layout = kv_layout(model, spec)
    n = len(blocks_of(model, spec))
    assert layout.cache_layers == tuple(range(n))
    cache = DynamicCache(config=model.config)
    ids = torch.randint(3, VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids, **{cache_kwarg(model): cache}, use_cache=True)
    assert len(cache.layers) == len(layout.layer_types)
    for i, layer in enumerate(cache.layers):
        assert bool(getattr(layer, "is_sliding", False)) == (layout.windows[i] is not None)
        kept = layer.keys.shape[-2]  # every cache layer was written by its block
        assert kept == 6 if layout.windows[i] is None else 0 < kept < 6
    assert layout.croppable == (not layout.sliding_blocks)


def test_gemma3_layout_shows_its_five_sliding_layers() -> None:
    model = tiny_model("gemma3")
    layout = kv_layout(model, resolve_arch(model))
    assert layout.sliding_blocks == (0, 1, 2, 3, 4) and not layout.croppable
    assert layout.windows[5] is None and layout.windows[0] == model.config.sliding_window


def test_a_cut_model_keeps_one_cache_layer_per_kept_block() -> None:
    from conftest import wrap_tiny

    from depthlens.cut.apply import remove_blocks_

    lm = wrap_tiny("gemma3")
    remove_blocks_(lm, [1, 5])
    layout = kv_layout(lm.model, lm.arch)
    assert layout.cache_layers == (0, 1, 2, 3)
    assert layout.sliding_blocks == (0, 1, 2, 3)  # the global layer 5 was removed


@pytest.mark.parametrize("name", ["bert", "lab_post_ln"])
def test_families_without_a_cache_are_refused_with_the_reason(name: str) -> None:
    model = tiny_model(name)
    spec = resolve_arch(model)
    why = cache_refusal(spec)
    assert why is not None and spec.family in why
    with pytest.raises(UnsupportedArchitectureError, match="no KV cache"):
        kv_layout(model, spec)
