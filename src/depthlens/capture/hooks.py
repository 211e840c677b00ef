"""Scoped forward hooks on the real HF modules.

Hooks are global state on the modules: they exist only inside these context managers and
are removed in ``finally``, so an exception mid-forward never leaves a model hooked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of


def block_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The residual stream entering a block, however the model passes it."""
    if "hidden_states" in kwargs and kwargs["hidden_states"] is not None:
        return kwargs["hidden_states"]
    return args[0]


def first_tensor(out: Any) -> torch.Tensor:
    """A module's main output (HF modules often return tuples)."""
    return out[0] if isinstance(out, tuple | list) else out


def added_by(spec: ArchSpec, out: Any) -> torch.Tensor:
    """What an "add"-mode sublayer module's output ``out`` adds to the residual stream.

    The module's main output, times the family's branch multiplier (Granite adds
    ``residual_multiplier · f(h)``; 1 elsewhere). Sandwich families name the post-norm as
    the sublayer module, so its output is already what is added.
    """
    t = first_tensor(out)
    mult = spec.wiring.branch_multiplier
    return t if mult == 1.0 else t * mult


def replace_first(out: Any, value: torch.Tensor) -> Any:
    """``out`` with its main output replaced, keeping the container type."""
    if isinstance(out, tuple):
        return (value, *out[1:])
    if isinstance(out, list):
        return [value, *out[1:]]
    return value


@dataclass
class BlockTrace:
    """What one forward wrote: ``states[l]`` = h_l (L+1 of them), ``attn[l]`` = a_l, m_l."""

    n_layers: int
    states: list[torch.Tensor | None] = field(default_factory=list)
    attn: list[torch.Tensor | None] = field(default_factory=list)
    mlp: list[torch.Tensor | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clear()

    def all_states(self) -> list[torch.Tensor]:
        """h_0..h_L of the last forward; an error if any is missing.

        Dropping the missing ones instead would silently shift every later index (h_l
        would be read as h_{l-1}); a state is missing when the forward stopped early or a
        block was never called.
        """
        missing = [l for l, s in enumerate(self.states) if s is None]
        if missing:
            raise RuntimeError(
                f"residual states {missing} of {self.n_layers + 1} were not recorded (the "
                "forward stopped early or did not call every block)"
            )
        return [s for s in self.states if s is not None]

    def clear(self) -> None:
        """Drop the references of the last forward."""
        self.states = [None] * (self.n_layers + 1)
        self.attn = [None] * self.n_layers
        self.mlp = [None] * self.n_layers


class StopForward(Exception):
    """Raised from a hook to end a forward early once the needed blocks have run."""


@contextlib.contextmanager
def hooks(handles_fn: Callable[[], list[Any]]) -> Iterator[None]:
    """Register hooks via ``handles_fn`` and remove every one of them on exit."""
    handles: list[Any] = []
    try:
        handles.extend(handles_fn())
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_blocks(
    model: nn.Module,
    spec: ArchSpec,
    *,
    attn: bool = True,
    mlp: bool = False,
    stop_after: int | None = None,
) -> Iterator[BlockTrace]:
    """Record h_0..h_L (and a_l, m_l: what each sublayer adds) during forwards inside.

    a_l and m_l follow the spec's wiring (:func:`added_by`): h_{l+1} = h_l + a_l + m_l.
    ``stop_after=k`` raises :class:`StopForward` once block k has run (calibration needs
    the forward only up to the end of the removed span); use :func:`run_forward`.
    """
    blocks = blocks_of(model, spec)
    trace = BlockTrace(len(blocks))
    attn = attn or (mlp and spec.mlp_mode == "stream")  # post-norm m_l needs a_l

    def make(l: int, block: nn.Module) -> list[Any]:
        def on_block(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            h = block_input(args, kwargs)
            if l == 0:
                trace.states[0] = h
            trace.states[l + 1] = first_tensor(out)
            if mlp and spec.mlp_mode == "stream":  # post-norm: m_l is the rest of Δ_l
                a = trace.attn[l]
                if a is None:
                    raise RuntimeError(f"block {l}'s attention hook did not run")
                trace.mlp[l] = first_tensor(out) - h - a
            if stop_after is not None and l >= stop_after:
                raise StopForward

        hs = [block.register_forward_hook(on_block, with_kwargs=True)]
        if mlp and spec.mlp_mode == "add":

            def on_mlp(_m: nn.Module, _a: tuple, out: Any) -> None:
                trace.mlp[l] = added_by(spec, out)

            hs.append(block.get_submodule(spec.mlp).register_forward_hook(on_mlp))
        if attn:
            sub = block.get_submodule(spec.attn)
            if spec.attn_mode == "add":

                def on_attn(_m: nn.Module, _a: tuple, out: Any) -> None:
                    trace.attn[l] = added_by(spec, out)

                hs.append(sub.register_forward_hook(on_attn))
            else:

                def on_attn_stream(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
                    trace.attn[l] = first_tensor(out) - block_input(args, kwargs)

                hs.append(sub.register_forward_hook(on_attn_stream, with_kwargs=True))
        return hs

    with hooks(lambda: [h for l, b in enumerate(blocks) for h in make(l, b)]):
        yield trace


def forward_kwargs(model: nn.Module) -> dict[str, Any]:
    """Keyword arguments that skip work the analyses never use (KV cache, full logits)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    kw: dict[str, Any] = {}
    if "use_cache" in params:
        kw["use_cache"] = False
    if "logits_to_keep" in params:
        kw["logits_to_keep"] = 1  # the lens recomputes logits only where it needs them
    return kw


def run_forward(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any
) -> Any:
    """One forward; returns its output, or None if a hook stopped it early."""
    try:
        return model(input_ids=input_ids, attention_mask=attention_mask, **extra)
    except StopForward:
        return None
