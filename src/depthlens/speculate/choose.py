"""Choosing the draft: top-1 agreement with the full model on calibration text, per depth.

Under teacher forcing on calibration windows, a draft's top-1 agrees with the full model's
at a fraction α of positions: the per-token acceptance rate of greedy speculation, taken as
i.i.d. by the cost model (:mod:`depthlens.speculate.cost`). Exit drafts (the first E blocks
read by the draft head, or by a tuned lens's translator and the draft head) are scored for
every E in one forward; skip drafts are grown
greedily, each round leaving out the block whose removal keeps the agreement highest (lazy:
after the first round only the previous round's best few are re-scored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from depthlens.arch.spec import get_submodule
from depthlens.capture.hooks import capture_blocks
from depthlens.data.windows import TokenWindows
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar
from depthlens.speculate.heads import DraftHead
from depthlens.speculate.stack import mask_reference_refusal
from depthlens.speculate.view import DepthView
from depthlens.tuned.lens import TunedLens

LAZY_RESCORE = 6


@dataclass(frozen=True)
class Candidate:
    """One draft and its agreement with the full model on the calibration text."""

    draft: str  # a --draft spec
    n_blocks: int  # blocks a draft step runs
    acceptance: float  # top-1 agreement = estimated per-token acceptance
    translator: bool = False  # a draft step also runs a tuned-lens translator
    skipped: tuple[int, ...] = ()  # skip drafts: the left-out blocks, in the order chosen


def _top1(head: DraftHead, h: torch.Tensor) -> torch.Tensor:
    """(B, T, d) normed states -> (B, T) token ids of the head's top-1."""
    rows = head.logits(h.reshape(-1, h.shape[-1])).argmax(-1)
    ids = rows if head.token_ids is None else head.token_ids[rows]
    return ids.reshape(h.shape[:2])


class AgreementProbe:
    """Top-1 agreement of draft readouts with the full model on fixed windows."""

    def __init__(self, lm: LoadedModel, windows: TokenWindows, head: DraftHead) -> None:
        self.lm, self.head = lm, head
        self.base: Any = lm.model.get_submodule(lm.arch.blocks.rpartition(".")[0])
        self.ids = windows.input_ids.to(lm.device)
        self.mask = windows.attention_mask.to(lm.device).bool()
        with torch.inference_mode():
            out: Any = lm.model(
                input_ids=self.ids, attention_mask=self.mask.long(), use_cache=False
            )
            self.target = out.logits.argmax(-1)  # (B, T)

    def _agree(self, pred: torch.Tensor) -> float:
        return float((pred == self.target)[self.mask].float().mean())

    def exits(self, lens: TunedLens | None = None) -> list[float]:
        """Agreement of the first E blocks read by the draft head, E = 1..L-1.

        With ``lens``, state h_E passes its translator before the final norm, as the
        ``exit:E:tuned:DIR`` draft reads it.
        """
        norm = get_submodule(self.lm.model, str(self.lm.arch.final_norm))

        def read(h: torch.Tensor, e: int) -> torch.Tensor:
            return norm(h if lens is None else lens.translate(h, e))

        with (
            capture_blocks(self.lm.model, self.lm.arch, attn=False) as trace,
            torch.inference_mode(),
        ):
            self.base(input_ids=self.ids, attention_mask=self.mask.long(), use_cache=False)
            states = trace.all_states()
        with torch.inference_mode():
            return [
                self._agree(_top1(self.head, read(states[e], e))) for e in range(1, len(states) - 1)
            ]

    def run_only(self, run: tuple[int, ...]) -> float:
        """Agreement of the draft that runs blocks ``run`` only."""
        view = DepthView(self.lm.model, self.lm.arch, run)
        try:
            view.to_draft()
            with torch.inference_mode():
                out: Any = self.base(
                    input_ids=self.ids, attention_mask=self.mask.long(), use_cache=False
                )
                return self._agree(_top1(self.head, out.last_hidden_state))
        finally:
            view.close()


def _skippable(lm: LoadedModel, skip: set[int], c: int) -> bool:
    run = tuple(i for i in range(lm.num_layers) if i not in skip and i != c)
    return bool(run) and mask_reference_refusal(lm.model, lm.arch, run) is None


def greedy_skips(
    probe: AgreementProbe, max_skip: int, *, floor: float = 0.2, progress: bool = False
) -> list[Candidate]:
    """Skip sets grown one block per round by best agreement, until ``max_skip`` or ``floor``."""
    lm = probe.lm
    L = lm.num_layers
    skip: list[int] = []  # in the order chosen
    order = list(range(L))
    out: list[Candidate] = []
    bar = progress_bar(max_skip, "draft: greedy skip", enabled=progress)
    for rnd in range(max_skip):
        pool = [c for c in order if c not in skip and _skippable(lm, set(skip), c)]
        if rnd > 0:
            pool = pool[:LAZY_RESCORE]
        if not pool:
            break
        scores = {
            c: probe.run_only(tuple(i for i in range(L) if i not in {*skip, c})) for c in pool
        }
        best = max(scores, key=lambda c: scores[c])
        rest = [c for c in order if c not in scores and c not in skip]
        order = sorted(scores, key=lambda c: -scores[c]) + rest
        skip.append(best)
        bar.update(1)
        if scores[best] < floor:
            break
        text = f"skip:{','.join(map(str, sorted(skip)))}"
        out.append(Candidate(text, L - len(skip), scores[best], skipped=tuple(skip)))
    bar.close()
    return out


def exit_candidates(probe: AgreementProbe) -> list[Candidate]:
    """``exit:E`` for every E in 1..L-1 with its agreement."""
    return [Candidate(f"exit:{e}", e, a) for e, a in enumerate(probe.exits(), start=1)]


def tuned_exit_candidates(probe: AgreementProbe, lens: TunedLens, lens_dir: str) -> list[Candidate]:
    """``exit:E:tuned:DIR`` for every E in 1..L-1: the first E blocks read by the tuned lens."""
    return [
        Candidate(f"exit:{e}:tuned:{lens_dir}", e, a, translator=True)
        for e, a in enumerate(probe.exits(lens), start=1)
    ]
