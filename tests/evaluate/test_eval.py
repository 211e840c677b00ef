"""Evaluation on tiny random models: perplexity, FLOPs, compare, multiple choice."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.cut import CutOptions, apply_cut_, plan_cut
from depthlens.errors import DepthlensError
from depthlens.evaluate.compare import compare
from depthlens.evaluate.flops import flops_per_token
from depthlens.evaluate.mc import (
    MCExample,
    bigbench_available,
    bigbench_task_path,
    evaluate_multiple_choice,
    load_task_json,
)
from depthlens.evaluate.perplexity import evaluate_perplexity, window_nll


def test_perplexity_matches_naive_and_batch_split():
    lm = wrap_tiny("llama")
    w = random_windows(n=5, seq_len=12, pad_last=4)
    r1 = evaluate_perplexity(lm, w, batch_size=1)
    r5 = evaluate_perplexity(lm, w, batch_size=5)
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(w)):  # naive: one window at a time, only its real tokens
            real = int(w.attention_mask[i].sum())
            ids = w.input_ids[i : i + 1, :real]
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
            for t in range(real - 1):
                nll -= float(logp[t, ids[0, t + 1]])
                count += 1
    assert r1["n_tokens"] == r5["n_tokens"] == count == 5 * 11 - 4
    assert r1["nll"] == pytest.approx(nll / count, rel=1e-5)
    assert r5["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_window_nll_is_the_perplexity_split_by_window():
    lm = wrap_tiny("llama")
    w = random_windows(n=5, seq_len=12, pad_last=4)
    sums, counts = window_nll(lm, w, batch_size=2)
    assert sums.dtype == counts.dtype == torch.float64
    assert counts.tolist() == [11.0] * 4 + [7.0]  # the padded last window predicts 7 tokens
    with torch.no_grad():  # naive: the last window alone, only its real tokens
        ids = w.input_ids[4:, :8]
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
        last = -sum(float(logp[t, ids[0, t + 1]]) for t in range(7))
    assert float(sums[4]) == pytest.approx(last, rel=1e-5)
    whole = evaluate_perplexity(lm, w, batch_size=5)
    assert float(sums.sum()) == pytest.approx(whole["nll_sum"], rel=1e-6)
    assert torch.equal(window_nll(lm, w, batch_size=5)[1], counts)


def test_ideal_speedup_and_compare_result():
    lm, cut = wrap_tiny("llama"), wrap_tiny("llama")
    w = random_windows(n=4, seq_len=16)
    fl = flops_per_token(lm, 16)
    assert fl["total"] == sum(fl["blocks"]) + fl["head"] and fl["head"] == 2 * 32 * 128
    plan = plan_cut(cut, w, "last", CutOptions(n=1))
    apply_cut_(cut, plan)
    res = compare(
        [("orig", lm), ("cut", cut)],
        w,
        speed_options={"prompt_len": 8, "decode_tokens": 2, "repeats": 1},
    )
    d = json.loads(json.dumps(res.to_dict()))  # JSON-able
    assert d["kind"] == "depthlens.compare" and d["schema_version"] >= 1
    a, b = d["models"]
    assert b["removed"] == [2] and b["method"] == "last" and b["num_layers"] == 3
    assert b["n_removed"] == 1 and a["n_removed"] == 0
    ideal = fl["total"] / (fl["total"] - fl["blocks"][2])
    assert b["ideal_speedup"] == pytest.approx(ideal) and a["ideal_speedup"] == 1.0
    assert a["ppl_ratio"] == 1.0 and b["ppl"] > 0 and b["prefill_speedup"] > 0
    assert b["decode_tok_s"] > 0
    assert type(res).from_dict(d) == res  # the typed result reads back exactly


class CharTokenizer:
    """Hand-made tokenizer: one id per character (tiny vocab of 128)."""

    bos_token_id = 1

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [3 + (ord(c) % 120) for c in text]


def test_multiple_choice_scoring_on_a_hand_made_task(tmp_path):
    task = {
        "examples": [
            {"input": "sky is", "target_scores": {"blue": 1, "green": 0}},
            {"input": "one two", "target_scores": {"three": 1, "four": 0, "ten": 0}},
        ]
    }
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    examples = load_task_json(path)
    assert examples[1] == MCExample("one two", ("three", "four", "ten"), 0)
    lm = wrap_tiny("llama")
    lm.tokenizer = CharTokenizer()
    res = evaluate_multiple_choice(lm, examples)
    # naive: score each full continuation separately
    hits = 0
    for ex in examples:
        ctx = [1] + lm.tokenizer.encode(ex.context)
        scores = []
        for c in ex.choices:
            cont = lm.tokenizer.encode(" " + c)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
            scores.append(sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
        hits += int(max(range(len(scores)), key=scores.__getitem__) == ex.answer)
    assert res["acc"] == hits / 2
    assert res["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_bigbench_missing_is_a_clear_error():
    if bigbench_available():
        pytest.skip("bigbench is installed")
    with pytest.raises(DepthlensError, match="bigbench"):
        bigbench_task_path("cause_and_effect/one_sentence_no_prompt")


def test_real_bigbench_task_loads_when_installed():
    if not bigbench_available():
        pytest.skip("BIG-bench tasks not installed (optional: bash scripts/setup-bigbench.sh)")
    from depthlens.evaluate.mc import DEFAULT_TASKS, load_task_json

    for task in DEFAULT_TASKS:
        ex = load_task_json(bigbench_task_path(task), max_examples=20)
        assert len(ex) == 20
        assert all(len(e.choices) >= 2 and 0 <= e.answer < len(e.choices) for e in ex)
