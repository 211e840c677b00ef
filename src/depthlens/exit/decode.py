"""Greedy decoding with early exit on the real HF modules (CALM, Schuster et al. 2022).

The prompt is prefilled by the full model. Each later token runs the real blocks under a
forward hook that reads the lens after every block; when the exit rule fires at depth e,
the hook raises, and the lens's top-1 at depth e is the next token.

Later tokens attend to keys/values of every block, also of those the exited token skipped.
CALM's state propagation fills them from the exit state: the exited hidden state h_e is
copied to every skipped block j > e, and block j's own K/V computation runs on it.
Here (``kv_fill="attention"``, the default where the block has ``input_layernorm`` and
``self_attn``) that is block j's real attention module on ``input_layernorm_j(h_e)``,
which writes K_j, V_j of h_e into the cache (its attention output is discarded); with
``kv_fill="block"`` the whole skipped block runs on h_e only to fill the cache (any
architecture, more compute). Everything happens through hooks and the HF cache object;
no forward is patched.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from depthlens.arch.kv import cache_kwarg
from depthlens.arch.spec import blocks_of
from depthlens.capture.hooks import first_tensor, hooks
from depthlens.errors import DepthlensError
from depthlens.exit.rules import ExitRule, fires_now
from depthlens.metrics.lens import Readout
from depthlens.models.loading import LoadedModel

KvFill = Literal["auto", "attention", "block"]


class _Exited(Exception):
    """Raised from a block hook once the rule fired; carries the exited token."""

    def __init__(self, token: int, depth: int) -> None:
        super().__init__(f"exit at depth {depth}")
        self.token, self.depth = token, depth


@dataclass
class DecodeResult:
    """Generated token ids with the depth each one exited at (L = full model)."""

    tokens: list[int]
    exit_depths: list[int]
    seconds: float
    kv_fill: str
    cache: Any = None  # the HF cache after the last step (for inspection)
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_kv_fill(blocks: list[nn.Module], kv_fill: KvFill) -> str:
    """``attention`` where every block has ``input_layernorm`` and ``self_attn``."""
    can = all(hasattr(b, "input_layernorm") and hasattr(b, "self_attn") for b in blocks)
    if kv_fill == "attention" and not can:
        raise DepthlensError(
            "--kv-fill attention needs blocks with input_layernorm and "
            "self_attn; use --kv-fill block for this architecture"
        )
    if kv_fill == "auto":
        return "attention" if can else "block"
    return kv_fill


class _ExitHooks:
    """Block hooks that read the lens and raise :class:`_Exited` when the rule fires."""

    def __init__(self, blocks: list[nn.Module], lens: Readout, rule: ExitRule, fill: str):
        self.blocks, self.lens, self.rule, self.fill = blocks, lens, rule, fill
        self.active = False  # off during the prefill
        self.filling = False  # our own calls of skipped blocks must not re-enter
        self.history: list[int] = []

    def register(self) -> list[Any]:
        last = len(self.blocks) - 1  # after the last block the model's own head answers
        return [
            b.register_forward_hook(self._make(l), with_kwargs=True)
            for l, b in enumerate(self.blocks)
            if l < last
        ]

    def _make(self, l: int) -> Any:
        def on_block(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            if not self.active or self.filling:
                return
            h = first_tensor(out)  # (1, 1, d) during decoding
            depth = l + 1
            logp = torch.log_softmax(self.lens.logits(h[:, -1], depth), dim=-1)[0]
            conf, top1 = logp.max(dim=-1)
            self.history.append(int(top1))
            ent = float(-(logp.exp() * logp).sum())
            if fires_now(self.rule, depth, float(conf.exp()), ent, self.history):
                self._fill_skipped(l + 1, h, kwargs)
                raise _Exited(int(top1), depth)

        return on_block

    def _fill_skipped(self, first: int, h: torch.Tensor, kwargs: dict) -> None:
        """State propagation: K/V of blocks first..L-1 computed from the exit state."""
        kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        self.filling = True
        try:
            for blk in self.blocks[first:]:
                if self.fill == "attention":
                    b: Any = blk
                    b.self_attn(hidden_states=b.input_layernorm(h), **kw)
                else:
                    blk(h, **kw)
        finally:
            self.filling = False


def greedy_decode(
    lm: LoadedModel,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    lens: Readout | None = None,
    rule: ExitRule | None = None,
    kv_fill: KvFill = "auto",
) -> DecodeResult:
    """Greedy decoding of ``prompt_ids`` (1, T); with ``lens`` and ``rule``, early exit."""
    from transformers import DynamicCache

    model: Any = lm.model
    blocks = list(blocks_of(model, lm.arch))
    n_layers = len(blocks)
    fill = resolve_kv_fill(blocks, kv_fill)
    cache = DynamicCache(config=model.config)
    ckw = {cache_kwarg(model): cache, "use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        ckw["logits_to_keep"] = 1
    ex = _ExitHooks(blocks, lens, rule, fill) if lens is not None and rule is not None else None
    ids = prompt_ids.to(lm.device)
    tokens: list[int] = []
    depths: list[int] = []
    t0 = time.perf_counter()
    with hooks(ex.register if ex else list), torch.inference_mode():
        out = model(input_ids=ids, **ckw)
        tokens.append(int(out.logits[0, -1].argmax()))
        depths.append(n_layers)
        if ex:
            ex.active = True
        for _ in range(max_new_tokens - 1):
            step = torch.tensor([[tokens[-1]]], device=lm.device)
            if ex:
                ex.history = []
            try:
                out = model(input_ids=step, **ckw)
                tokens.append(int(out.logits[0, -1].argmax()))
                depths.append(n_layers)
            except _Exited as e:
                tokens.append(e.token)
                depths.append(e.depth)
    return DecodeResult(tokens, depths, time.perf_counter() - t0, fill if ex else "none", cache)
