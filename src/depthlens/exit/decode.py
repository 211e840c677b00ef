"""Greedy decoding with early exit on the real HF modules (CALM, Schuster et al. 2022).

The prompt is prefilled by the full model. Each later token runs the real blocks under a
forward hook that reads the lens after every block; when the exit rule fires at depth e,
the hook raises, and the lens's top-1 at depth e is the next token.

Later tokens attend to keys/values of every block, also of those the exited token skipped.
CALM's state propagation fills them from the exit state: the exited hidden state h_e is
copied to every skipped block j > e, and block j's own K/V computation runs on it.
Here (``kv_fill="attention"``, the default where the family's spec names the attention
module and its input norm) that is block j's real attention module on ``attn_norm_j(h_e)``,
which writes K_j, V_j of h_e into the cache layer it owns (its attention output is
discarded); with ``kv_fill="block"`` the whole skipped block runs on h_e only to fill the
cache (any family with a KV cache, more compute). A family that keeps no KV cache
(encoders, the lab model) is refused (:func:`depthlens.arch.kv.cache_refusal`); a model
mixing attention kinds (Gemma 2/3's sliding and global layers, whose masks and rotary
embeddings differ) fills by block. Everything happens through hooks and the HF cache
object; no forward is patched.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from depthlens.arch.kv import KvLayout, cache_kwarg, cache_refusal, kv_layout
from depthlens.arch.spec import ArchSpec, blocks_of
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


def resolve_kv_fill(spec: ArchSpec, layout: KvLayout, kv_fill: KvFill) -> str:
    """``attention`` where it is exact, else ``block``.

    Exact: the spec names the attention module, and every block's attention takes the same
    mask and rotary embedding (one kind of cache layer).
    """
    kinds = {layout.layer_types[c] for c in layout.cache_layers}
    why = None
    if spec.attn_module is None:
        why = f"the '{spec.family}' layout does not name the attention module and its norm"
    elif len(kinds) > 1:
        why = (
            f"the model mixes attention kinds ({', '.join(sorted(kinds))}), which take "
            "different masks and rotary embeddings than the exit block's"
        )
    if kv_fill == "attention" and why is not None:
        raise DepthlensError(f"--kv-fill attention is not exact here: {why}; use --kv-fill block")
    if kv_fill == "auto":
        return "attention" if why is None else "block"
    return kv_fill


def _named_args(block: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The block's call arguments by name, less its input (GPT-2 passes the cache by position).

    The attention modules name their arguments as their blocks do (``past_key_values``,
    ``attention_mask``, ``position_embeddings``, …), so these can be passed on to them.
    """
    bound = inspect.signature(block.forward).bind(*args, **kwargs)
    named = dict(bound.arguments)
    named.pop(next(iter(named)))  # the stream entering the block
    named.update(named.pop("kwargs", {}))
    return named


class _ExitHooks:
    """Block hooks that read the lens after each block and act when the rule fires.

    With the ``attention`` fill the skipped blocks' attention modules run on the exit state
    with the exit block's arguments, then :class:`_Exited` ends the forward. With the
    ``block`` fill the forward goes on, but every later block reads the exit state instead
    of its predecessor's output, with its own arguments (mask, rotary embedding of its kind).
    """

    def __init__(
        self, blocks: list[nn.Module], spec: ArchSpec, lens: Readout, rule: ExitRule, fill: str
    ) -> None:
        self.blocks, self.spec, self.lens, self.rule, self.fill = blocks, spec, lens, rule, fill
        self.active = False  # off during the prefill
        self.history: list[int] = []
        self.exited: tuple[int, int, torch.Tensor] | None = None  # (token, depth, h_e)

    def register(self) -> list[Any]:
        last = len(self.blocks) - 1  # after the last block the model's own head answers
        handles = [
            b.register_forward_hook(self._make(l), with_kwargs=True)
            for l, b in enumerate(self.blocks)
            if l < last
        ]
        handles += [
            b.register_forward_pre_hook(self._feed_exit_state, with_kwargs=True)
            for b in self.blocks
        ]
        return handles

    def start_step(self) -> None:
        """Reset the per-token state before decoding the next token."""
        self.history, self.exited = [], None

    def _feed_exit_state(self, _m: nn.Module, args: tuple, kwargs: dict) -> Any:
        """Block fill: a block after the exit reads h_e (its K/V are those of h_e)."""
        if self.exited is None:
            return None
        h = self.exited[2]
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}

    def _make(self, l: int) -> Any:
        def on_block(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            if not self.active or self.exited is not None:
                return
            h = first_tensor(out)  # (1, 1, d) during decoding
            depth = l + 1
            logp = torch.log_softmax(self.lens.logits(h[:, -1], depth), dim=-1)[0]
            conf, top1 = logp.max(dim=-1)
            self.history.append(int(top1))
            ent = float(-(logp.exp() * logp).sum())
            if fires_now(self.rule, depth, float(conf.exp()), ent, self.history):
                self.exited = (int(top1), depth, h)
                if self.fill == "attention":
                    self._fill_attention(l + 1, h, _named_args(_m, args, kwargs))
                    raise _Exited(int(top1), depth)

        return on_block

    def _fill_attention(self, first: int, h: torch.Tensor, kw: dict) -> None:
        """State propagation: K/V of blocks first..L-1 from their attention on the exit state."""
        attn, norm = self.spec.attn_module, self.spec.attn_norm
        assert attn is not None  # resolve_kv_fill chose "attention" only then
        for blk in self.blocks[first:]:
            x = blk.get_submodule(norm)(h) if norm is not None else h
            blk.get_submodule(attn)(hidden_states=x, **kw)


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
    why = cache_refusal(lm.arch)
    if why is not None:
        raise DepthlensError(f"cannot decode {lm.ref} with a KV cache: {why}")
    layout = kv_layout(model, lm.arch)  # refuses cache indices the config disagrees with
    blocks = list(blocks_of(model, lm.arch))
    n_layers = len(blocks)
    fill = resolve_kv_fill(lm.arch, layout, kv_fill)
    cache = DynamicCache(config=model.config)
    ckw = {cache_kwarg(model): cache, "use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        ckw["logits_to_keep"] = 1
    ex = None
    if lens is not None and rule is not None:
        ex = _ExitHooks(blocks, lm.arch, lens, rule, fill)
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
                ex.start_step()
            try:
                out = model(input_ids=step, **ckw)
                exited = ex.exited if ex else None
                tokens.append(exited[0] if exited else int(out.logits[0, -1].argmax()))
                depths.append(exited[1] if exited else n_layers)
            except _Exited as e:
                tokens.append(e.token)
                depths.append(e.depth)
    return DecodeResult(tokens, depths, time.perf_counter() - t0, fill if ex else "none", cache)
