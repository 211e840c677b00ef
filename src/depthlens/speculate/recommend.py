"""``depthlens draft``: score drafts, time the cost terms, recommend a draft and k.

The recommendation maximises the cost model's predicted tokens/s over every scored draft
(exit depths, read by the logit lens or, with a trained tuned lens, by its translators,
and greedy skip sets), k = 1..8 and the draft head (reduced when a draft
vocabulary is given). When even the best is predicted to be slower than plain decoding,
the recommendation is plain decoding, and ``generate`` with this file says so.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope, Enveloped
from depthlens.speculate.api import run_speculative
from depthlens.speculate.build import draft_head
from depthlens.speculate.choose import (
    AgreementProbe,
    Candidate,
    exit_candidates,
    greedy_skips,
    tuned_exit_candidates,
)
from depthlens.speculate.cost import MAX_K, CostTerms, measure_costs
from depthlens.speculate.heads import frequent_tokens

CHOICE_KIND = "depthlens.draft_choice"
#: Below this predicted speed-up the recommendation is plain decoding: the cost model's
#: error (i.i.d. acceptance, timing noise) must not make the recommended setting slower.
MARGIN = 1.1


@dataclass(frozen=True)
class DraftChoice(Enveloped):
    """The recommended draft and k, every scored candidate and the measured cost terms."""

    envelope: Envelope
    recommended: dict[str, Any]  # draft, k, draft_vocab, acceptance, predicted_speedup
    plain: bool  # True: the cost model predicts a loss for every draft
    candidates: list[dict[str, Any]]
    costs: dict[str, Any]
    vocab_ids: list[int] | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = CHOICE_KIND


def best_config(
    cands: list[Candidate], costs: CostTerms, reduced: bool, max_k: int = MAX_K
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each candidate's best k and predicted speed-up, and the best of all."""
    rows = []
    for c in cands:

        def predict(k: int, c: Candidate = c) -> float:
            return costs.speedup(c.n_blocks, c.acceptance, k, reduced, c.translator)

        k = max(range(1, max_k + 1), key=predict)
        rows.append(
            {
                "draft": c.draft,
                "n_blocks": c.n_blocks,
                "acceptance": c.acceptance,
                "k": k,
                "predicted_speedup": predict(k),
            }
        )
    if not rows:
        raise DepthlensError("no draft could be scored; use more calibration text")
    return rows, max(rows, key=lambda r: r["predicted_speedup"])


def choose_draft(
    lm: LoadedModel,
    windows: TokenWindows,
    *,
    draft_vocab: int | None = None,
    max_skip: int | None = None,
    tuned: str | Path | None = None,
    progress: bool = False,
) -> DraftChoice:
    """Score exit and greedy skip drafts on ``windows``, time the costs, pick the fastest.

    ``tuned``: a trained tuned lens's folder; its ``exit:E:tuned:DIR`` drafts are scored
    too (agreement for every E, and the translator's time in each draft step).
    """
    vocab = None
    if draft_vocab is not None:
        cfg: Any = lm.model.config
        v = int(cfg.get_text_config().vocab_size)
        vocab = frequent_tokens(windows.input_ids[windows.attention_mask.bool()], draft_vocab, v)
    lens, lens_dir = None, None
    if tuned is not None:
        from depthlens.tuned.lens import load_lens

        lens_dir = str(Path(tuned).expanduser().resolve())  # the choice file works from anywhere
        lens = load_lens(lens_dir, lm)[0].eval()
    probe = AgreementProbe(lm, windows, draft_head(lm, vocab))
    cands = exit_candidates(probe)
    if lens is not None and lens_dir is not None:
        cands += tuned_exit_candidates(probe, lens, lens_dir)
    cands += greedy_skips(probe, max_skip or lm.num_layers // 2, progress=progress)
    costs = measure_costs(lm, vocab, lens=lens)
    rows, best = best_config(cands, costs, vocab is not None)
    plain = best["predicted_speedup"] < MARGIN
    rec = {**best, "draft_vocab": None if vocab is None else len(vocab)}
    return DraftChoice(
        envelope=Envelope(
            kind=CHOICE_KIND,
            model=lm.identity(),
            data=dict(windows.identity) if hasattr(windows, "identity") else {},
            options={"draft_vocab": draft_vocab, "max_skip": max_skip, "tuned": lens_dir},
            tokens={"calibration": int(windows.attention_mask.sum())},
        ),
        recommended=rec,
        plain=plain,
        candidates=rows,
        costs=costs.to_dict(),
        vocab_ids=None if vocab is None else vocab.tolist(),
    )


def measure_choice(
    lm: LoadedModel, choice: DraftChoice, prompt: list[int], new_tokens: int, rounds: int = 3
) -> dict[str, Any]:
    """Interleaved plain ``generate`` vs the recommended draft: measured speed-up (median)."""
    rec = choice.recommended
    vocab = torch.tensor(choice.vocab_ids) if choice.vocab_ids else None
    ratios, acc, mal = [], [], []
    ids = torch.tensor([prompt])
    gen_kw = {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    for _ in range(rounds):
        t = time.perf_counter()
        with torch.inference_mode():
            lm.model.generate(ids, **gen_kw)  # type: ignore[operator]
        plain = time.perf_counter() - t
        _, st = run_speculative(
            lm, prompt, rec["draft"], max_new_tokens=new_tokens, k=rec["k"], vocab_ids=vocab
        )
        # Per generated token (EOS may end the draft run early).
        ratios.append((plain / new_tokens) / (st.seconds / max(len(st.tokens), 1)))
        acc.append(st.acceptance)
        mal.append(st.mean_accepted_length)
    return {
        "speedup_median": statistics.median(ratios),
        "speedups": ratios,
        "acceptance": statistics.median(acc),
        "mean_accepted_length": statistics.median(mal),
        "new_tokens": new_tokens,
        "rounds": rounds,
    }
