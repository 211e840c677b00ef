"""Measured time shares of attention and MLP sublayers, for a speed-up budget.

The model is timed three ways, interleaved round by round (so load drifts hit all three
alike): intact, with every attention sublayer skipped, and with every MLP sublayer skipped
(:func:`depthlens.arch.removed.skip_sublayer_`, restored in ``finally``). One sublayer's
share of the time is (t_intact − t_without) / (t_intact × L): layers are taken as equal,
as they are in shape. ``prefill``: one forward over ``context`` tokens; ``decode``: one
next-token step with a KV cache of ``context`` tokens, so at long context the attention
share includes reading the cache.
"""

from __future__ import annotations

import contextlib
import inspect
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from depthlens.arch.removed import Part, module_path, skip_sublayer_
from depthlens.arch.spec import blocks_of
from depthlens.models.loading import LoadedModel


@dataclass(frozen=True)
class UnitTime:
    """Per-sublayer share of the measured time (``share["attn"]``, ``share["mlp"]``)."""

    share: dict[str, float]
    context: int
    mode: str
    seconds: dict[str, float]  # median time of: intact, no attention, no MLP
    rounds: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@contextlib.contextmanager
def skipped_everywhere(lm: LoadedModel, part: Part) -> Iterator[None]:
    """Inside, every block's ``part`` sublayer computes nothing (restored afterwards)."""
    path = module_path(lm.arch, part)
    parent_path, _, name = path.rpartition(".")
    saved = []
    try:
        for b in blocks_of(lm.model, lm.arch):
            parent = b.get_submodule(parent_path) if parent_path else b
            saved.append((parent, getattr(parent, name)))
            skip_sublayer_(b, lm.arch, part)
        yield
    finally:
        for parent, mod in saved:
            setattr(parent, name, mod)


@torch.inference_mode()
def _time_once(lm: LoadedModel, ids: torch.Tensor, mode: str) -> float:
    model: Any = lm.model
    if mode == "prefill":
        t = time.perf_counter()
        model(input_ids=ids, use_cache=False)
        return time.perf_counter() - t
    out = model(input_ids=ids[:, :-1], use_cache=True)
    # transformers >= 5.2x names the KV cache argument `cache`, older ones `past_key_values`
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    t = time.perf_counter()
    model(input_ids=ids[:, -1:], use_cache=True, **{key: out.past_key_values})
    return time.perf_counter() - t


def measure_unit_time(
    lm: LoadedModel, context: int, mode: str = "prefill", rounds: int = 5, seed: int = 0
) -> UnitTime:
    """Time shares of one attention and one MLP sublayer at ``context`` (see module doc)."""
    vocab = int(lm.model.config.get_text_config().vocab_size)  # type: ignore[operator,union-attr]
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (1, context), generator=gen).to(lm.device)
    ways: dict[str, Any] = {
        "intact": contextlib.nullcontext,
        "no_attn": lambda: skipped_everywhere(lm, "attn"),
        "no_mlp": lambda: skipped_everywhere(lm, "mlp"),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(rounds + 1):  # round 0 warms up
        for k, ctx in ways.items():
            with ctx():
                t = _time_once(lm, ids, mode)
            if r:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = lm.num_layers
    share = {
        "attn": max(med["intact"] - med["no_attn"], 0.0) / (med["intact"] * n),
        "mlp": max(med["intact"] - med["no_mlp"], 0.0) / (med["intact"] * n),
    }
    return UnitTime(share, context, mode, med, rounds)
