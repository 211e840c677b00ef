"""Loss-aware search (greedy-ls, beam-ls) on a tiny Llama: scores, prefix reuse, trace."""

from __future__ import annotations

import torch
from conftest import random_windows
from test_cut_multi import llama6

from depthlens.capture.hooks import hooks
from depthlens.cut import CutOptions, plan_cut
from depthlens.cut.multi import mlp_transform_hooks, runs_of
from depthlens.cut.search import SearchOptions, StateCache
from depthlens.cut.select import skip_blocks

OPTS = SearchOptions(score_windows=2, batch_size=4)


def _naive_kl(lm, cache, w, removed):
    """Full forward of the score windows with blocks skipped and each run's T hooked."""
    merges = tuple((s - 1, cache.transform((s, e))) for s, e in runs_of(removed))
    ids, mask = w.input_ids[-2:], w.attention_mask[-2:]
    with torch.no_grad():
        ref = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        with (
            hooks(mlp_transform_hooks(lm.model, lm.arch, merges)),
            skip_blocks(lm.model, lm.arch, removed),
        ):
            cut = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    keep = mask.bool()
    p, q = torch.log_softmax(ref[keep], -1), torch.log_softmax(cut[keep], -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_tail_score_matches_full_forward_and_prefix_reuse():
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    cache = StateCache(lm, w, OPTS)
    assert cache.n_score_tokens == 32 and cache.n_fit_tokens == 8 * 16
    removed = (2, 3, 5)
    got, states = cache.tail(removed, 0, cache.score_h[0], record=True)
    torch.testing.assert_close(got["kl"], _naive_kl(lm, cache, w, removed), atol=1e-5, rtol=1e-4)
    # Starting later from the stored stream of the same cut gives the same score.
    again, _ = cache.tail(removed, 4, states[4], record=False)
    assert abs(again["kl"] - got["kl"]) < 1e-6
    zero, _ = cache.tail((), 0, cache.score_h[0], record=False)
    assert abs(zero["kl"]) < 1e-6  # nothing removed: the original distribution


def test_cached_transform_is_lstsq_on_fit_windows():
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    cache = StateCache(lm, w, OPTS)
    with torch.no_grad():
        out = lm.model(
            input_ids=w.input_ids[:8],
            attention_mask=w.attention_mask[:8],
            output_hidden_states=True,
            use_cache=False,
        )
    hs = out.hidden_states
    m = cache.m[1].double()  # block 1's MLP output (what it adds)
    z = hs[4].reshape(-1, 32).double() - hs[2].reshape(-1, 32).double() + m
    ref = torch.linalg.lstsq(m, z).solution
    # the cache stores states in bfloat16: agreement to a few percent of the map's scale
    t = cache.transform((2, 4))
    assert float((t - ref).norm() / ref.norm()) < 0.05


def test_greedy_trace_picks_the_lowest_candidate_each_step():
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    plan = plan_cut(lm, w, "greedy-ls", CutOptions(n=2, search=OPTS))
    trace = plan.selection["trace"]
    assert len(trace) == 2 and len(trace[0]["candidates"]) == 5  # blocks 1..5
    for st in trace:
        best = min(st["candidates"], key=lambda c: c[2])
        assert best[1] in st["kept"][0]["removed"]
    assert (
        tuple(
            plan.selection["best_by_n"]["2"]
            if "2" in plan.selection["best_by_n"]
            else plan.selection["best_by_n"][2]
        )
        == plan.removed
    )
    cost = plan.selection["cost"]
    assert 0 < cost["cache_pass_fe"] == 1.0 and cost["candidates_scored"] == 5 + 4
    assert "search trace" in plan.preview()


def test_beam_is_no_worse_than_greedy():
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    greedy = plan_cut(lm, w, "greedy-ls", CutOptions(n=3, search=OPTS))
    beam = plan_cut(
        lm, w, "beam-ls", CutOptions(n=3, search=SearchOptions(beam=3, score_windows=2))
    )
    assert beam.selection["score"]["kl"] <= greedy.selection["score"]["kl"] + 1e-9
    assert len(beam.selection["trace"][1]["parents"]) == 3


def test_prefilter_scores_only_the_best_proxies_and_keeps_search_maps():
    lm = llama6()
    w = random_windows(n=10, seq_len=16)
    opts = SearchOptions(score_windows=2, prefilter=2, refit=False)
    plan = plan_cut(lm, w, "greedy-ls", CutOptions(n=2, search=opts))
    assert [len(st["candidates"]) for st in plan.selection["trace"]] == [2, 2]
    cache = StateCache(lm, w, opts)
    proxies = {c: cache.proxy((c,)) for c in range(1, 6)}
    firsts = {c[1] for c in plan.selection["trace"][0]["candidates"]}
    assert firsts == set(sorted(proxies, key=proxies.get)[:2])
    assert plan.fit["mode"].startswith("search maps") and len(plan.merges) >= 1
