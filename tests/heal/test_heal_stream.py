"""The healing stream: windows from any text, seeded per epoch, resumable from a cursor."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import random_windows
from fixtures_saved import tiny_tokenizer, word_text

from depthlens.data.text import make_source as _make_source
from depthlens.errors import DepthlensError
from depthlens.heal import Cursor, FixedStream, TextStream


def _source(n_docs: int = 5, words: int = 37):
    docs = [word_text(words, seed=i) for i in range(n_docs)]
    return _make_source("words", docs, kind="test")


def _take(batches, n):
    return list(itertools.islice(batches, n))


def test_text_stream_cuts_bos_windows_and_runs_past_the_text():
    src, tok = _source(), tiny_tokenizer()
    stream = TextStream(src, tok, seq_len=16, seed=0)
    got = _take(stream.batches(2, Cursor()), 20)  # 20 x 2 x 15 = 600 tokens > 5 x 38
    ids = torch.cat([b[0][0] for b in got])  # (40, 16)
    assert ids.shape == (40, 16) and bool((ids[:, 0] == tok.bos_token_id).all())
    assert got[-1][1].epoch >= 2  # the budget outran the text: more epochs, new orders
    body = ids[:, 1:].flatten().tolist()
    words = [w for d in src.docs for w in tok(d, add_special_tokens=False)["input_ids"]]
    assert set(body) <= set(words) | {tok.eos_token_id}


def test_text_stream_resumes_from_its_cursor():
    stream = TextStream(_source(), tiny_tokenizer(), seq_len=16, seed=3)
    whole = _take(stream.batches(3, Cursor()), 12)
    resumed = _take(stream.batches(3, whole[4][1]), 7)
    for (a, _), (b, _) in zip(whole[5:], resumed, strict=True):
        assert torch.equal(a[0], b[0])


def test_fixed_stream_cycles_in_new_orders_and_resumes():
    w = random_windows(n=5, seq_len=8)
    stream = FixedStream(w, seed=0)
    whole = _take(stream.batches(2, Cursor()), 10)
    rows = torch.cat([b[0][0] for b in whole])  # (20, 8): four epochs of five windows
    first, second = rows[:5], rows[5:10]
    assert {tuple(r) for r in first.tolist()} == {tuple(r) for r in w.input_ids.tolist()}
    assert not torch.equal(first, second)  # a new order each epoch
    resumed = _take(stream.batches(2, whole[3][1]), 6)
    for (a, _), (b, _) in zip(whole[4:], resumed, strict=True):
        assert torch.equal(a[0], b[0])


def test_empty_text_is_refused():
    with pytest.raises(DepthlensError, match="empty"):
        TextStream(_make_source("none", [""], kind="test"), tiny_tokenizer(), seq_len=8)
