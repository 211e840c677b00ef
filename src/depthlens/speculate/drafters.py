"""The drafts: the verified model with depth left out (sharing its cache), or a cut model.

A drafter proposes k tokens after the sequence so far; the loop in
:mod:`depthlens.speculate.decode` verifies them. :class:`SelfDraft` runs the verified model
itself through a :class:`~depthlens.speculate.view.DepthView` on the one shared cache:
positions before the draft hold the full model's exact keys and values for every block, so
the draft needs no prefill and no second cache. Its own writes for the drafted positions are
approximate from the first left-out block on (that block's output is missing from the
stream), and are rolled back before verification, which recomputes every block over the
drafted tokens. :class:`ModelDraft` is a separate (cut) model with its own cache, rolled
back to the prefix it shares with the verified sequence.
"""

from __future__ import annotations

from typing import Any

import torch

from depthlens.speculate.accept import probs
from depthlens.speculate.heads import DraftHead, to_full_vocab
from depthlens.speculate.stack import Stack, crop_to
from depthlens.speculate.view import DepthView


class _Drafter:
    """k draft tokens from a stack and a head, greedy or sampled at ``temperature``."""

    def __init__(self, stack: Stack, head: DraftHead, temperature: float) -> None:
        self.stack, self.head, self.temperature = stack, head, temperature
        self.ids = head.token_ids  # row -> token id of a reduced head, or None

    def _pick(self, h: torch.Tensor, gen: torch.Generator | None, qs: list[torch.Tensor]) -> int:
        """The next draft token from the (1, d) state; records q when sampling."""
        z = self.head.logits(h)  # (1, V') float32
        if self.temperature <= 0 or gen is None:
            row = int(z[0].argmax())
        else:
            pr = probs(z, self.temperature)
            row = int(torch.multinomial(pr[0], 1, generator=gen))
            qs.append(to_full_vocab(pr, self.head)[0])
        return row if self.ids is None else int(self.ids[row])

    def _draft(
        self, first: list[int], start: int, k: int, gen: torch.Generator | None
    ) -> tuple[list[int], torch.Tensor | None]:
        """Feed ``first`` at ``start``, then each new draft token, until k are drafted."""
        qs: list[torch.Tensor] = []
        out: list[int] = []
        ids = torch.tensor([first], dtype=torch.long)
        pos = start
        for _ in range(k):
            h = self.stack.forward(ids, pos)[:, -1]  # (1, d)
            pos += ids.shape[1]
            out.append(self._pick(h, gen, qs))
            ids = torch.tensor([[out[-1]]], dtype=torch.long)
        return out, (torch.stack(qs) if qs else None)


class SelfDraft(_Drafter):
    """The verified model with blocks left out, on the verified model's own cache."""

    def __init__(self, stack: Stack, view: DepthView, head: DraftHead, temperature: float) -> None:
        super().__init__(stack, head, temperature)
        self.view = view

    def propose(
        self, seq: list[int], k: int, gen: torch.Generator | None
    ) -> tuple[list[int], torch.Tensor | None]:
        """K tokens after ``seq`` (the cache holds all of ``seq`` but its last token)."""
        start = len(seq) - 1
        self.view.to_draft()
        try:
            return self._draft([seq[-1]], start, k, gen)
        finally:
            self.view.to_full()
            crop_to(self.stack.cache, start)  # drop the draft's approximate entries

    def accepted(self, seq: list[int]) -> None:
        """Nothing to do: the verification already rolled the shared cache back."""

    def close(self) -> None:
        """Remove the view's hooks and restore the full block list."""
        self.view.close()


class ModelDraft(_Drafter):
    """A separate draft model (a cut of the verified one) with its own cache."""

    def __init__(self, stack: Stack, head: DraftHead, temperature: float) -> None:
        super().__init__(stack, head, temperature)
        self.stack.reset()
        self.fed: list[int] = []  # the tokens its cache holds, in order

    def propose(
        self, seq: list[int], k: int, gen: torch.Generator | None
    ) -> tuple[list[int], torch.Tensor | None]:
        """K tokens after ``seq``: feeds what its cache lacks (the prompt, the first time)."""
        n = len(self.fed)
        out, q = self._draft(seq[n:], n, k, gen)
        self.fed = [*seq, *out[:-1]]
        return out, q

    def accepted(self, seq: list[int]) -> None:
        """Roll the draft's cache back to the prefix it shares with the verified ``seq``."""
        keep = 0
        for a, b in zip(self.fed, seq, strict=False):
            if a != b:
                break
            keep += 1
        crop_to(self.stack.cache, keep)
        self.fed = self.fed[:keep]

    def close(self) -> None:
        """Drop the draft's cache."""
        self.stack.cache = None


Drafter = Any  # SelfDraft | ModelDraft: propose(), accepted(), close()
