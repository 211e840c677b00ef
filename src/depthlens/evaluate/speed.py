"""Prefill and greedy-decode throughput (SPEC "Evaluation"): median of repeated runs."""

from __future__ import annotations

import inspect
import statistics
import time
from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel


def _prompt(lm: LoadedModel, batch: int, length: int, seed: int) -> torch.Tensor:
    vocab = int(lm.model.config.get_text_config().vocab_size)  # type: ignore[operator,union-attr]
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=gen).to(lm.device)  # (B, T)


def measure_speed(
    lm: LoadedModel,
    *,
    prompt_len: int = 256,
    batch: int = 1,
    decode_tokens: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Tokens/s of a full-logits prefill and of greedy decoding with the KV cache.

    Prefill: one forward over (batch, prompt_len) tokens. Decode: ``decode_tokens`` steps
    of one token each, feeding the argmax back with the cache, after a prefill that is not
    timed. Each is repeated ``repeats`` times after one warm-up; the median is reported.
    """
    if min(prompt_len, batch, decode_tokens, repeats) < 1:
        raise DepthlensError("speed options must all be at least 1")
    ids = _prompt(lm, batch, prompt_len, seed)
    model: Any = lm.model
    # transformers ≥ 5.2x names the KV cache `cache`; older releases `past_key_values`.
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    prefill, decode = [], []
    with torch.inference_mode():
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            t1 = time.perf_counter()
            past = out[key]
            nxt = out.logits[:, -1:].argmax(-1)  # (B, 1)
            t2 = time.perf_counter()
            for _ in range(decode_tokens):
                step = model(input_ids=nxt, use_cache=True, **{key: past})
                past = step[key]
                nxt = step.logits[:, -1:].argmax(-1)
            t3 = time.perf_counter()
            if r:  # the first run warms up
                prefill.append(batch * prompt_len / (t1 - t0))
                decode.append(batch * decode_tokens / (t3 - t2))
    return {
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "prefill_runs": prefill,
        "decode_runs": decode,
        "options": {"prompt_len": prompt_len, "batch": batch, "decode_tokens": decode_tokens,
                    "repeats": repeats, "threads": torch.get_num_threads()},  # fmt: skip
    }
