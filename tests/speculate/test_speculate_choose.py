"""The draft chooser's agreement probe and the cost model's arithmetic."""

from __future__ import annotations

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.speculate.build import draft_head
from depthlens.speculate.choose import AgreementProbe, exit_candidates, greedy_skips
from depthlens.speculate.cost import CostTerms, measure_costs
from depthlens.speculate.recommend import best_config, choose_draft


def _terms() -> CostTerms:
    return CostTerms(
        block_s=1.0,
        step_overhead_s=2.0,
        head_full_s=8.0,
        head_reduced_s=1.0,
        verify_s={k: 40.0 + k for k in range(1, 9)},
        plain_token_s=40.0,
        num_layers=30,
        context=128,
    )


def test_speedup_is_the_expected_tokens_over_the_iteration_cost() -> None:
    t = _terms()
    # alpha 0.5, k 2, 10 blocks, reduced head: (1 - .5^3)/.5 = 1.75 tokens per 2*13 + 42 s.
    assert t.speedup(10, 0.5, 2, True) == pytest.approx(1.75 / 68 * 40)
    assert t.speedup(10, 0.5, 2, False) == pytest.approx(1.75 / 82 * 40)
    assert t.speedup(10, 0.0, 1, True) < 1  # a useless draft only costs


def test_best_config_picks_the_k_that_maximises_the_prediction() -> None:
    from depthlens.speculate.choose import Candidate

    t = _terms()
    rows, best = best_config([Candidate("exit:10", 10, 0.9), Candidate("exit:5", 5, 0.1)], t, True)
    for r in rows:
        assert all(
            r["predicted_speedup"] >= t.speedup(r["n_blocks"], r["acceptance"], k, True)
            for k in range(1, 9)
        )
    assert best["draft"] == "exit:10"


def test_agreement_of_the_whole_model_is_one_and_exits_cover_every_depth() -> None:
    lm = wrap_tiny("llama")
    probe = AgreementProbe(lm, random_windows(n=2, seq_len=16), draft_head(lm, None))
    assert probe.run_only(tuple(range(lm.num_layers))) == 1.0
    ex = exit_candidates(probe)
    assert [c.draft for c in ex] == [f"exit:{e}" for e in range(1, lm.num_layers)]
    for c in ex:  # the probe's exit agreement equals running the first E blocks only
        assert c.acceptance == pytest.approx(probe.run_only(tuple(range(c.n_blocks))), abs=1e-6)


def test_greedy_skips_grow_by_one_and_keep_block_zero() -> None:
    lm = wrap_tiny("gemma3")
    probe = AgreementProbe(lm, random_windows(n=2, seq_len=16), draft_head(lm, None))
    skips = greedy_skips(probe, 3, floor=0.0)
    assert [c.n_blocks for c in skips] == [5, 4, 3]
    assert all("skip:0" not in c.draft and ",0," not in c.draft for c in skips)


def test_choose_draft_records_costs_and_a_recommendation(tmp_path) -> None:
    lm = wrap_tiny("llama")
    choice = choose_draft(lm, random_windows(n=2, seq_len=16), draft_vocab=20, max_skip=2)
    assert choice.recommended["draft"] in {r["draft"] for r in choice.candidates}
    assert choice.costs["head_reduced_s"] is not None and len(choice.vocab_ids or []) >= 20
    choice.save(tmp_path / "c.json")
    back = type(choice).load(tmp_path / "c.json")
    assert back.recommended == choice.recommended
    assert back.to_dict() == choice.to_dict()  # the whole choice reads back equal


def test_measured_costs_are_positive() -> None:
    lm = wrap_tiny("llama")
    c = measure_costs(lm, torch.arange(10), context=8, repeats=2, max_k=3)
    assert c.plain_token_s > 0 and set(c.verify_s) == {1, 2, 3} and c.head_full_s > 0
