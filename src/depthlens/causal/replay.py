"""Replaying blocks: run the real block modules again on a changed residual stream.

A clean forward records every block's call (positional and keyword arguments: attention
mask, position embeddings, cache position, ...). Any block can then be called again with
only its hidden-state argument swapped, so an intervention at block l re-runs blocks
l+1..L-1 from the cached h_l instead of the whole model. Interventions are forward hooks
that exist only inside context managers (removed in ``finally``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.capture.hooks import block_input, first_tensor, hooks, replace_first
from depthlens.errors import DepthlensError

Sublayer = Literal["attn", "mlp"]


@dataclass(frozen=True)
class BlockCall:
    """The arguments one block was called with during the clean forward."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def with_hidden(self, h: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The same call with the residual stream replaced by ``h``."""
        if self.kwargs.get("hidden_states") is not None:
            return self.args, {**self.kwargs, "hidden_states": h}
        return (h, *self.args[1:]), self.kwargs


@contextlib.contextmanager
def record_block_calls(model: nn.Module, spec: ArchSpec) -> Iterator[list[BlockCall | None]]:
    """Record each block's call arguments during forwards inside the block."""
    blocks = blocks_of(model, spec)
    calls: list[BlockCall | None] = [None] * len(blocks)

    def make(l: int, block: nn.Module) -> Any:
        def on_call(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls[l] = BlockCall(tuple(args), dict(kwargs))

        return block.register_forward_pre_hook(on_call, with_kwargs=True)

    with hooks(lambda: [make(l, b) for l, b in enumerate(blocks)]):
        yield calls


def replay_block(block: nn.Module, call: BlockCall | None, h: torch.Tensor) -> torch.Tensor:
    """Run ``block`` on ``h`` with the arguments of its recorded call; returns h_out."""
    if call is None:
        raise RuntimeError("block was not called during the recorded forward")
    args, kwargs = call.with_hidden(h.to(block_input(call.args, call.kwargs).device))
    return first_tensor(block(*args, **kwargs))


def sublayer_module(block: nn.Module, spec: ArchSpec, part: Sublayer) -> nn.Module:
    """The attention or MLP module of ``block`` whose output is what that sublayer adds.

    Zeroing that output removes the branch whatever the wiring: Granite's multiplier scales
    zero, sandwich families name the post-norm (its output is what is added), and in a
    parallel block the other sublayer still reads h_l. Post-norm blocks have no such module.
    """
    if spec.wiring.norm == "post":
        raise DepthlensError(
            f"{part}-only skip is not supported for family '{spec.family}': its {part} module "
            "outputs the whole stream (post-norm), not what the sublayer adds; run the skip "
            "sweep without the sublayer variants (--sublayers none)"
        )
    return block.get_submodule(spec.attn if part == "attn" else spec.mlp)


@contextlib.contextmanager
def zero_sublayer(block: nn.Module, spec: ArchSpec, part: Sublayer) -> Iterator[None]:
    """Inside the block, ``block`` runs without its attention (or MLP) contribution."""
    sub = sublayer_module(block, spec, part)

    def on_out(_m: nn.Module, _a: tuple[Any, ...], out: Any) -> Any:
        return replace_first(out, torch.zeros_like(first_tensor(out)))

    with hooks(lambda: [sub.register_forward_hook(on_out)]):
        yield


@contextlib.contextmanager
def identity_block(block: nn.Module) -> Iterator[None]:
    """Inside the block, ``block`` returns its input: h_{l+1} := h_l."""

    def on_out(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
        return replace_first(out, block_input(args, kwargs))

    with hooks(lambda: [block.register_forward_hook(on_out, with_kwargs=True)]):
        yield
