"""The skip sweep against an oracle that shares none of its code.

For every block l the oracle really deletes the block from a copy of the model
(``depthlens.cut.remove_blocks_``), or zeroes the weights of its attention / MLP output
projection, runs the model's own forward, and recomputes KL(p_L ‖ p_L^skip), Δ loss and
‖Δ_j^skip − Δ_j‖ / ‖Δ_j‖ in float64 from the model's logits and from plain block hooks
written here. Nothing of the sweep (replay, identity hooks, lens, kernels, sums) is used.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.arch.spec import blocks_of
from depthlens.causal import SkipOptions, skip_sweep
from depthlens.cut import remove_blocks_
from depthlens.models.loading import LoadedModel

WINDOWS = random_windows(n=3, seq_len=12, pad_last=3)
REL, ABS = 1e-4, 1e-6


def _run(lm: LoadedModel) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """float64 log-probs (B, T, V) and each block's Δ = out − in (B, T, d), in block order."""
    deltas: list[torch.Tensor] = []
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for k, block in enumerate(blocks_of(lm.model, lm.arch)):

        def pre(_m: Any, args: tuple, kwargs: dict, k: int = k) -> None:
            inputs[k] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

        def post(_m: Any, _a: tuple, _kw: dict, out: Any, k: int = k) -> None:
            h_out = out[0] if isinstance(out, tuple) else out
            deltas.append((h_out - inputs[k]).double())

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            logits = lm.model(
                input_ids=WINDOWS.input_ids, attention_mask=WINDOWS.attention_mask, use_cache=False
            ).logits
    finally:
        for h in handles:
            h.remove()
    return torch.log_softmax(logits.double(), dim=-1), deltas


def _masks() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    am = WINDOWS.attention_mask.bool()
    sel = am.clone()
    sel[:, 0] = False  # default: the first position (BOS) is left out; padding is on the right
    has_next = torch.zeros_like(sel)
    has_next[:, :-1] = sel[:, :-1] & am[:, 1:]
    nxt = torch.zeros_like(WINDOWS.input_ids)
    nxt[:, :-1] = WINDOWS.input_ids[:, 1:]
    return sel, has_next, nxt


def _oracle(
    clean: tuple[torch.Tensor, list[torch.Tensor]],
    skipped: tuple[torch.Tensor, list[torch.Tensor]],
    kept: list[int],
    n: int,
    l: int,
) -> dict[str, Any]:
    (lp0, d0), (lp1, d1) = clean, skipped
    sel, has_next, nxt = _masks()
    kl = (lp0.exp() * (lp0 - lp1)).sum(-1)[sel]
    ce0 = -lp0.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)[has_next]
    ce1 = -lp1.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)[has_next]
    delta_of = dict(zip(kept, d1))  # original block index -> its Δ in the skipped model
    fut, fut_max = [None] * n, [None] * n
    for j in range(l + 1, n):
        r = ((delta_of[j] - d0[j]).norm(dim=-1) / d0[j].norm(dim=-1))[sel]
        fut[j], fut_max[j] = float(r.mean()), float(r.max())  # type: ignore[call-overload]
    return {
        "kl": float(kl.mean()),
        "kl_max": float(kl.max()),
        "dloss": float(ce1.mean() - ce0.mean()),
        "future": fut,
        "future_max": fut_max,
    }


def _near(got: float | None, want: float | None) -> bool:
    if want is None:
        return got is None
    return got is not None and math.isclose(got, want, rel_tol=REL, abs_tol=ABS)


def _check(part: dict[str, Any], l: int, want: dict[str, Any]) -> None:
    assert _near(part["skip_out_kl_mean"][l], want["kl"]), (l, part["skip_out_kl_mean"][l], want)
    assert _near(part["skip_out_kl_max"][l], want["kl_max"])
    assert _near(part["delta_loss"][l], want["dloss"])
    for j, (f, fm) in enumerate(zip(want["future"], want["future_max"])):
        assert _near(part["skip_future"][l][j], f), (l, j, part["skip_future"][l][j], f)
        assert _near(part["skip_future_max"][l][j], fm)


def _zero_proj_(lm: LoadedModel, l: int, path: str) -> None:
    with torch.no_grad():
        for p in blocks_of(lm.model, lm.arch)[l].get_submodule(path).parameters():
            p.zero_()


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_block_skip_matches_really_removing_the_block(name: str) -> None:
    lm = wrap_tiny(name)
    if name == "gpt2":  # its init (std 0.02) makes blocks nearly no-ops: make them matter
        with torch.no_grad():
            for block in blocks_of(lm.model, lm.arch):
                block.attn.c_proj.weight.mul_(30)
                block.mlp.c_proj.weight.mul_(30)
    n = lm.num_layers
    res = skip_sweep(
        lm, WINDOWS, SkipOptions(sublayers=(), lens_kernel="eager"), progress=False
    ).to_dict()
    clean = _run(lm)
    for l in range(n):
        cut = LoadedModel(copy.deepcopy(lm.model), None, lm.arch, ref="copy", source="test")
        remove_blocks_(cut, (l,))
        assert cut.num_layers == n - 1
        kept = [i for i in range(n) if i != l]
        _check(res, l, _oracle(clean, _run(cut), kept, n, l))
    assert min(res["skip_out_kl_mean"]) > 1e-3  # every block matters: not a vacuous check


def test_sublayer_skips_match_zeroed_output_projections() -> None:
    lm = wrap_tiny("llama")
    n = lm.num_layers
    with torch.no_grad():  # at init the MLPs barely move the stream; make them matter
        for block in blocks_of(lm.model, lm.arch):
            block.mlp.gate_proj.weight.mul_(5)
            block.mlp.up_proj.weight.mul_(5)
    res = skip_sweep(lm, WINDOWS, SkipOptions(lens_kernel="eager"), progress=False).to_dict()
    clean = _run(lm)
    for key, path in (("attn_only", "self_attn.o_proj"), ("mlp_only", "mlp.down_proj")):
        for l in range(n):
            cut = LoadedModel(copy.deepcopy(lm.model), None, lm.arch, ref="copy", source="test")
            _zero_proj_(cut, l, path)
            _check(res[key], l, _oracle(clean, _run(cut), list(range(n)), n, l))
        assert min(res[key]["skip_out_kl_mean"]) > 1e-4  # every variant matters
