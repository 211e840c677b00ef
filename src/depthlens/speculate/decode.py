"""The speculative loop: draft k tokens, verify them in one forward of the full model, keep.

The verified model's cache always holds every token of the sequence but the last. One
iteration: the drafter proposes k tokens; the full model runs over [last, d_1..d_k] (k+1
positions) and gives k+1 next-token distributions; :mod:`depthlens.speculate.accept` keeps a
prefix of the drafts and adds one token of the full model's own; the cache is rolled back to
the new sequence. Every emitted token comes from the full model's distribution at a position
whose context is the emitted sequence, so greedy output equals ``generate(do_sample=False)``
and sampled output has its distribution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from depthlens.speculate.accept import accept_greedy, accept_sampled, probs
from depthlens.speculate.heads import FullHead
from depthlens.speculate.stack import Stack, crop_to


@dataclass
class LoopStats:
    """What one speculative generation did and how long each part took."""

    tokens: list[int] = field(default_factory=list)
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # of which kept
    iterations: int = 0
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    seconds: float = 0.0

    @property
    def acceptance(self) -> float:
        """Kept / proposed draft tokens."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens emitted per verification: kept drafts + the full model's own token."""
        return (len(self.tokens) - 1) / max(self.iterations, 1)

    def summary(self) -> dict[str, Any]:
        """Plain JSON numbers (no token list)."""
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance": self.acceptance,
            "iterations": self.iterations,
            "mean_accepted_length": self.mean_accepted_length,
            "prefill_s": self.prefill_s,
            "draft_s": self.draft_s,
            "verify_s": self.verify_s,
            "seconds": self.seconds,
        }


@dataclass
class Sampler:
    """Greedy (temperature 0) or seeded sampling at ``temperature``."""

    temperature: float = 0.0
    gen: torch.Generator | None = None

    def first(self, logits: torch.Tensor) -> int:
        """The token after the prompt, from the full model's (1, V) logits."""
        if self.temperature <= 0 or self.gen is None:
            return int(logits[0].argmax())
        return int(torch.multinomial(probs(logits, self.temperature)[0], 1, generator=self.gen))

    def accept(
        self, drafted: list[int], logits: torch.Tensor, q: torch.Tensor | None
    ) -> tuple[int, int]:
        """(kept drafts, next token) for (k+1, V) verification logits."""
        if self.temperature <= 0 or self.gen is None or q is None:
            return accept_greedy(drafted, logits)
        return accept_sampled(drafted, probs(logits, self.temperature), q, self.gen)


def _emit(stats: LoopStats, new: list[int], budget: int, eos: set[int]) -> bool:
    """Append ``new`` up to the budget and the first EOS; True when generation is over."""
    for t in new:
        stats.tokens.append(t)
        if t in eos or len(stats.tokens) >= budget:
            return True
    return False


def speculative_loop(
    stack: Stack,
    head: FullHead,
    drafter: Any,
    prompt: list[int],
    max_new_tokens: int,
    k: int,
    sampler: Sampler,
    eos: set[int],
) -> LoopStats:
    """Generate up to ``max_new_tokens`` after ``prompt`` with draft length ``k``."""
    stats = LoopStats()
    t0 = time.perf_counter()
    stack.reset()
    with torch.inference_mode():
        h = stack.forward(torch.tensor([prompt], dtype=torch.long), 0)[:, -1]
        done = _emit(stats, [sampler.first(head.logits(h))], max_new_tokens, eos)
        stats.prefill_s = time.perf_counter() - t0
        seq = [*prompt, *stats.tokens]
        while not done:
            kk = min(k, max_new_tokens - len(stats.tokens))
            t1 = time.perf_counter()
            drafted, q = drafter.propose(seq, kk, sampler.gen)
            t2 = time.perf_counter()
            start = len(seq) - 1
            hs = stack.forward(torch.tensor([[seq[-1], *drafted]], dtype=torch.long), start)
            a, nxt = sampler.accept(drafted, head.logits(hs[0]), q)
            new = [*drafted[:a], nxt]
            done = _emit(stats, new, max_new_tokens, eos)
            seq.extend(new)
            crop_to(stack.cache, len(seq) - 1)
            drafter.accepted(seq)
            stats.verify_s += time.perf_counter() - t2
            stats.draft_s += t2 - t1
            stats.drafted += kk
            stats.accepted += a
            stats.iterations += 1
    stats.seconds = time.perf_counter() - t0
    return stats
