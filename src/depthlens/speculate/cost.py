"""A measured cost model of speculative decoding: what a draft step and a verify cost here.

Terms, timed on the loaded model with a prefilled cache (docs/SPECULATIVE.md):

- ``block_s``: one block at one position, and ``step_overhead_s``: the rest of a base
  forward at one position (embedding, masks, rotary, final norm, Python), fitted from the
  time of a forward through all L blocks and through half of them;
- ``head_full_s`` / ``head_reduced_s``: the readout of one state, full or reduced;
- ``verify_s[k]``: the full model over k+1 positions with the full head (one iteration's
  verification);
- ``plain_token_s``: one plain decoding step (all blocks and the full head);
- ``translator_s``: a tuned lens's translator at one position (timed only when one is given).

With acceptance α per draft token (i.i.d.), an iteration drafting k tokens emits
(1 − α^{k+1}) / (1 − α) tokens (Leviathan et al. 2023) at a cost of k draft steps and one
verify; the predicted speed-up is that rate over plain decoding's.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from depthlens.models.loading import LoadedModel
from depthlens.speculate.heads import FullHead, ReducedHead
from depthlens.speculate.stack import Stack, crop_to
from depthlens.speculate.view import DepthView
from depthlens.tuned.lens import TunedLens

MAX_K = 8


@dataclass(frozen=True)
class CostTerms:
    """Seconds of each part of speculative decoding on this machine (medians)."""

    block_s: float
    step_overhead_s: float
    head_full_s: float
    head_reduced_s: float | None
    verify_s: dict[int, float]  # k -> the full model over k+1 positions, full head
    plain_token_s: float
    num_layers: int
    context: int  # positions in the cache while timing
    translator_s: float = 0.0  # one tuned-lens translator (d x d affine) at one position

    def draft_step_s(self, n_blocks: int, reduced: bool, translator: bool = False) -> float:
        """One draft token through ``n_blocks`` blocks (a translator if tuned) and its head."""
        head = self.head_reduced_s if reduced and self.head_reduced_s is not None else None
        extra = self.translator_s if translator else 0.0
        return self.step_overhead_s + n_blocks * self.block_s + extra + (head or self.head_full_s)

    def speedup(
        self, n_blocks: int, alpha: float, k: int, reduced: bool, translator: bool = False
    ) -> float:
        """Predicted tokens/s over plain decoding's, for draft depth, acceptance and k."""
        a = min(max(alpha, 0.0), 0.999999)
        tokens = (1 - a ** (k + 1)) / (1 - a)
        seconds = k * self.draft_step_s(n_blocks, reduced, translator) + self.verify_s[k]
        return (tokens / seconds) * self.plain_token_s

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (``verify_s`` keys as strings)."""
        d = asdict(self)
        d["verify_s"] = {str(k): v for k, v in self.verify_s.items()}
        return d


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _forward_time(stack: Stack, view: DepthView | None, at: int, q: int, repeats: int) -> float:
    """Median seconds of a base forward over q positions after ``at`` cached ones."""
    ids = torch.randint(3, 100, (1, q))

    def once() -> None:
        if view is not None:
            view.to_draft()
        try:
            stack.forward(ids, at)
        finally:
            if view is not None:
                view.to_full()
            crop_to(stack.cache, at)

    once()  # warm-up
    return _median_time(once, repeats)


def measure_costs(
    lm: LoadedModel,
    vocab_ids: torch.Tensor | None = None,
    *,
    context: int = 128,
    repeats: int = 5,
    max_k: int = MAX_K,
    lens: TunedLens | None = None,
) -> CostTerms:
    """Time every term of :class:`CostTerms` on ``lm`` after a ``context``-token prefill.

    With ``lens``, also its translator (``translator_s``; the one of block L/2: all have
    the same shape).
    """
    stack = Stack(lm.model, lm.arch)
    stack.reset()
    L = lm.num_layers
    half = DepthView(lm.model, lm.arch, tuple(range(max(1, L // 2))))
    full = FullHead(lm.model, lm.arch)
    with torch.inference_mode():
        stack.forward(torch.randint(3, 100, (1, context)), 0)
        t_all = _forward_time(stack, None, context, 1, repeats)
        t_half = _forward_time(stack, half, context, 1, repeats)
        n_half = len(half.run)
        block = max((t_all - t_half) / max(L - n_half, 1), 0.0)
        h = torch.randn(1, _width(lm)).to(stack.device, next(lm.model.parameters()).dtype)
        head_full = _median_time(lambda: full.logits(h), repeats * 4)
        head_red = None
        if vocab_ids is not None:
            red = ReducedHead(full, vocab_ids)
            head_red = _median_time(lambda: red.logits(h), repeats * 4)
        translator = 0.0
        if lens is not None:
            translator = _median_time(lambda: lens.translate(h, L // 2), repeats * 4)
        verify = {
            k: _forward_time(stack, None, context, k + 1, repeats) + _head_rows(full, h, k + 1)
            for k in range(1, max_k + 1)
        }
    half.close()
    stack.cache = None
    for k in range(2, max_k + 1):  # more positions never cost less: timing noise must not pick k
        verify[k] = max(verify[k], verify[k - 1])
    return CostTerms(
        block_s=block,
        step_overhead_s=max(t_all - L * block, 0.0),
        head_full_s=head_full,
        head_reduced_s=head_red,
        verify_s=verify,
        plain_token_s=t_all + head_full,
        num_layers=L,
        context=context,
        translator_s=translator,
    )


def _width(lm: LoadedModel) -> int:
    cfg: Any = lm.model.config
    return int(cfg.get_text_config().hidden_size)


def _head_rows(head: FullHead, h: torch.Tensor, rows: int) -> float:
    x = h.expand(rows, -1).contiguous()
    return _median_time(lambda: head.logits(x), 5)
