"""Speculative sampling leaves the full model's output distribution unchanged (chi-square).

The second generated token is the first one a draft proposes (k=2 also drafts the third).
Its exact marginal, Σ_a p(a | prompt) p(x | prompt, a), is computed from the full model in
one batched forward and compared with many seeded speculative draws. A deliberately wrong
rule (keep every draft token) must fail the same test, so the test can fail.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import wrap_tiny
from tiny_models import VOCAB

from depthlens.speculate import run_speculative

PROMPT = [1, 17, 42, 99, 5]
TEMPERATURE = 0.7
DRAWS = 1500


def _sharpened():
    """The tiny llama with a 4x head: peaked distributions make the test powerful."""
    lm = wrap_tiny("llama")
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(4.0)  # type: ignore[union-attr,operator]
    lm.model.generation_config.eos_token_id = None  # type: ignore[union-attr]  # no early stop
    lm.model.config.eos_token_id = None  # type: ignore[union-attr]
    return lm


def _exact_second_token(lm) -> torch.Tensor:
    with torch.no_grad():
        z1 = lm.model(input_ids=torch.tensor([PROMPT])).logits[0, -1]
        p1 = torch.softmax(z1 / TEMPERATURE, -1)
        batch = torch.tensor([[*PROMPT, a] for a in range(VOCAB)])
        z2 = lm.model(input_ids=batch).logits[:, -1]
        p2 = torch.softmax(z2 / TEMPERATURE, -1)
    return (p1[:, None] * p2).sum(0).double()


def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Upper tail of Pearson's chi-square, cells with expected < 5 pooled (Wilson-Hilferty)."""
    n = float(counts.sum())
    exp = probs * n
    big = exp >= 5
    obs = torch.cat([counts[big].double(), counts[~big].double().sum().reshape(1)])
    e = torch.cat([exp[big], exp[~big].sum().reshape(1)])
    keep = e > 0
    stat = float(((obs[keep] - e[keep]) ** 2 / e[keep]).sum())
    df = int(keep.sum()) - 1
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _second_tokens(lm) -> torch.Tensor:
    counts = torch.zeros(VOCAB, dtype=torch.long)
    for seed in range(DRAWS):
        _, st = run_speculative(
            lm, PROMPT, "exit:1", max_new_tokens=3, k=2, temperature=TEMPERATURE, seed=seed
        )
        counts[st.tokens[1]] += 1
    return counts


def test_speculative_sampling_matches_the_full_model() -> None:
    lm = _sharpened()
    exact = _exact_second_token(lm)
    assert float(exact.max()) > 0.01  # peaked enough for a wrong rule to show (1/128 flat)
    assert _chi2_pvalue(_second_tokens(lm), exact) > 1e-3


def test_a_wrong_acceptance_rule_fails_the_same_test(monkeypatch: pytest.MonkeyPatch) -> None:
    import depthlens.speculate.decode as decode

    def keep_every_draft(drafted, p, q, gen):  # the draft's own distribution: wrong
        return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=gen))

    monkeypatch.setattr(decode, "accept_sampled", keep_every_draft)
    lm = _sharpened()
    assert _chi2_pvalue(_second_tokens(lm), _exact_second_token(lm)) < 1e-6
