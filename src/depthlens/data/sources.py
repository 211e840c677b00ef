"""Text sources: the packaged offline texts, local files, and (when installed) hub datasets.

A :class:`TextSource` is a tuple of documents plus a JSON-able identity (kind, name, sha256
of the documents, counts, split rule) that results record so they can be traced to the
exact text they were computed on. The text itself is never written into results.

Packaged texts come from files inside the ``gensim==4.4.0`` wheel (read as data; gensim is
never imported): ``wiki`` is a shortened English Wikipedia dump, cleaned with
mwparserfromhell and split deterministically into ``wiki-calib`` and ``wiki-eval``;
``news`` is the Lee news corpus (one article per line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthlens.data.wikitext import clean_wiki_articles, clean_wikitext
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_json, parse_json_object
from depthlens.paths import default_cache_dir

__all__ = ["clean_wikitext"]  # re-exported: the cleaning lives in data/wikitext.py

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS_FILE = "lee_background.cor"
GENSIM_SETUP = "pip install --no-deps gensim==4.4.0"

#: Bump when the wiki cleaning changes, so stale caches are not reused.
WIKI_CLEAN_VERSION = 1
WIKI_MIN_CHARS = 500
WIKI_EVAL_EVERY = 5
WIKI_SPLIT_RULE = (
    f"articles sorted by title; index % {WIKI_EVAL_EVERY} == {WIKI_EVAL_EVERY - 1} "
    "-> wiki-eval, the rest -> wiki-calib"
)
WIKI_CLEANING = (
    f"mwparserfromhell strip_code (v{WIKI_CLEAN_VERSION}); redirects, non-article namespaces, "
    f"templates, refs, tables, file/category links dropped; articles < {WIKI_MIN_CHARS} "
    "chars dropped"
)

_PACKAGED: dict[str, tuple[str, str]] = {
    "wiki": (WIKI_FILE, "English Wikipedia articles (shortened 2016 dump), cleaned; all"),
    "wiki-calib": (WIKI_FILE, "the wiki articles minus wiki-eval: use for calibration"),
    "wiki-eval": (WIKI_FILE, "every 5th wiki article by title: held-out evaluation"),
    "news": (NEWS_FILE, "Lee news corpus, 300 short news articles: out-of-domain evaluation"),
}
PACKAGED_NAMES: tuple[str, ...] = tuple(_PACKAGED)


@dataclass(frozen=True)
class TextSource:
    """A named tuple of documents and the identity that results record for it."""

    name: str
    docs: tuple[str, ...]
    identity: dict[str, Any] = field(hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able identity (never the text itself)."""
        return dict(self.identity)

    @property
    def n_chars(self) -> int:
        """Total number of characters over all documents."""
        return sum(len(d) for d in self.docs)


def docs_sha256(docs: Iterable[str]) -> str:
    """Hash documents unambiguously: each doc's UTF-8 byte length, then its bytes."""
    h = hashlib.sha256()
    for doc in docs:
        b = doc.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _make_source(name: str, docs: Iterable[str], **identity: Any) -> TextSource:
    docs_t = tuple(docs)
    ident = {"kind": identity.pop("kind"), "name": name, **identity}
    ident.update(sha256=docs_sha256(docs_t), n_docs=len(docs_t), n_chars=sum(map(len, docs_t)))
    return TextSource(name=name, docs=docs_t, identity=ident)


# --------------------------------------------------------------------------- packaged files


def _gensim_data_file(filename: str) -> Path:
    """Locate a file in the gensim wheel's test data without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DepthlensError(
            f"the packaged texts ({', '.join(PACKAGED_NAMES)}) come from the gensim wheel, "
            f"which is not installed; run the set-up: {GENSIM_SETUP}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / filename
    if not path.is_file():
        raise DepthlensError(
            f"packaged text file not found: {path}; reinstall the gensim wheel: {GENSIM_SETUP}"
        )
    return path


def wiki_cache_path(source_sha256: str, cache_dir: Path | None = None) -> Path:
    """Where the cleaned articles of the dump with this sha256 are cached."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return root / "data" / f"wiki-{source_sha256[:16]}-clean{WIKI_CLEAN_VERSION}.json"


def _read_wiki_cache(path: Path, source_sha256: str) -> list[tuple[str, str]] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if obj.get("source_sha256") != source_sha256:
            return None
        return [(str(t), str(x)) for t, x in obj["articles"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing or corrupt: rebuild


def _wiki_articles(cache_dir: Path | None) -> tuple[Path, str, list[tuple[str, str]]]:
    path = _gensim_data_file(WIKI_FILE)
    source_sha = _file_sha256(path)
    cache = wiki_cache_path(source_sha, cache_dir)
    articles = _read_wiki_cache(cache, source_sha)
    if articles is None:
        articles = clean_wiki_articles(path, WIKI_MIN_CHARS)
        obj = {
            "source_sha256": source_sha,
            "clean_version": WIKI_CLEAN_VERSION,
            "articles": articles,
        }
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, obj)
        except OSError:
            pass  # an unwritable cache only costs time on the next load
    return path, source_sha, articles


def _load_wiki(name: str, cache_dir: Path | None) -> TextSource:
    path, source_sha, articles = _wiki_articles(cache_dir)
    if name == "wiki-eval":
        picked = [a for i, a in enumerate(articles) if i % WIKI_EVAL_EVERY == WIKI_EVAL_EVERY - 1]
    elif name == "wiki-calib":
        picked = [a for i, a in enumerate(articles) if i % WIKI_EVAL_EVERY != WIKI_EVAL_EVERY - 1]
    else:
        picked = articles
    return _make_source(
        name,
        (text for _, text in picked),
        kind="packaged",
        path=str(path),
        source_sha256=source_sha,
        split=WIKI_SPLIT_RULE,
        cleaning=WIKI_CLEANING,
    )


def _load_news() -> TextSource:
    path = _gensim_data_file(NEWS_FILE)
    text = path.read_text(encoding="utf-8", errors="replace")
    docs = [line.strip() for line in text.splitlines() if line.strip()]
    return _make_source(
        "news",
        docs,
        kind="packaged",
        path=str(path),
        source_sha256=_file_sha256(path),
        split="one article per non-empty line",
    )


# --------------------------------------------------------------------------- local files

_ENCODING_FIX = "convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"


def _read_text_file(path: Path) -> str:
    """Read a file as UTF-8 text, with an actionable error for every way that fails."""
    if path.is_dir():
        raise DepthlensError(f"data path is a directory: {path}; pass a .txt or .jsonl file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DepthlensError(
            f"cannot read data file {path}: {e.strerror or e}; check that it exists and is readable"
        ) from e
    if b"\x00" in raw:
        raise DepthlensError(
            f"data file {path} looks binary (it contains NUL bytes); pass a UTF-8 text or "
            f".jsonl file (if it is UTF-16 text, {_ENCODING_FIX.replace('latin1', 'utf-16')})"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DepthlensError(
            f"data file {path} is not valid UTF-8 (bad byte {raw[e.start : e.start + 1]!r} at "
            f"offset {e.start}); {_ENCODING_FIX}"
        ) from e
    if not text.strip():
        raise DepthlensError(f"data file {path} contains no text; pass a file with some text")
    return text


def _parse_jsonl(path: Path, text: str, text_field: str) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json_object(
            line,
            f"{path} line {lineno}",
            f'each line of a .jsonl file must be one JSON object, like {{"{text_field}": "..."}}',
        )
        if text_field not in record:
            keys = ", ".join(map(repr, record)) or "none"
            raise DepthlensError(
                f"{path} line {lineno} has no field {text_field!r} (its keys: {keys}); "
                "pass the right one with --text-field"
            )
        value = record[text_field]
        if not isinstance(value, str):
            raise DepthlensError(
                f"{path} line {lineno}: field {text_field!r} is {type(value).__name__}, "
                "not a string; pass a text field with --text-field"
            )
        if value.strip():
            docs.append(value.strip())
    if not docs:
        raise DepthlensError(f"data file {path} contains no text in field {text_field!r}")
    return docs


def _load_file(path: Path, text_field: str) -> TextSource:
    suffix = path.suffix.lower()
    if suffix == ".json":
        raise DepthlensError(
            f"data file {path} is .json; pass a .jsonl file (one JSON object per line) or "
            "a plain .txt file"
        )
    text = _read_text_file(path)
    if suffix in (".jsonl", ".ndjson"):
        docs = _parse_jsonl(path, text, text_field)
        split = f"one document per line, field {text_field!r}"
    else:
        docs = [text.strip()]
        split = "whole file is one document"
    return _make_source(
        str(path),
        docs,
        kind="file",
        path=str(path.resolve()),
        source_sha256=_file_sha256(path),
        split=split,
    )


_HUB_ID_RE = re.compile(r"^[\w.-]+(/[\w.-]+)?(:[\w.-]+)?$")


def _looks_like_path(ref: str) -> bool:
    """Tell a ref meant as a file from a hub id (``name``, ``owner/name``, ``id:config``)."""
    if ref.lower().endswith((".txt", ".jsonl", ".ndjson", ".json")):
        return True
    if ref.startswith((".", "/", "~")) or "\\" in ref or not _HUB_ID_RE.match(ref):
        return True
    owner = ref.split("/", 1)[0]
    return "/" in ref and Path(owner).is_dir()


# --------------------------------------------------------------------------- hub datasets


def _load_hub(ref: str, text_field: str) -> TextSource:
    """Load split "train" of a hub dataset ``id`` or ``id:config`` (needs `datasets`)."""
    packaged = ", ".join(PACKAGED_NAMES)
    if importlib.util.find_spec("datasets") is None:
        raise DepthlensError(
            f"unknown text {ref!r}: not a packaged name ({packaged}) nor an existing file; "
            "loading it as a Hugging Face hub dataset needs `pip install datasets` and "
            "network access"
        )
    import datasets

    repo, _, config = ref.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split="train")
    except OSError as e:  # connection, offline mode and not-found errors are all OSErrors
        raise DepthlensError(
            f"hub dataset {ref!r} is not available offline or does not exist ({e}); "
            f"connect to the network or use a packaged text: {packaged}"
        ) from e
    if text_field not in ds.column_names:
        raise DepthlensError(
            f"hub dataset {ref!r} has no column {text_field!r} (columns: "
            f"{', '.join(ds.column_names)}); pass the right one with --text-field"
        )
    docs = [str(t).strip() for t in ds[text_field] if t is not None and str(t).strip()]
    if not docs:
        raise DepthlensError(f"hub dataset {ref!r} contains no text in column {text_field!r}")
    split = f"split 'train', column {text_field!r}"
    return _make_source(ref, docs, kind="hub", split=split)


# --------------------------------------------------------------------------- public API


def load_text(ref: str, *, text_field: str = "text", cache_dir: Path | None = None) -> TextSource:
    """Load a text by reference: a packaged name, a local .txt/.jsonl file, or a hub id.

    Packaged names (``wiki``, ``wiki-calib``, ``wiki-eval``, ``news``) win over a file of
    the same name; write ``./news`` for the file. A ``.txt`` (or any non-JSONL) file is one
    document; a ``.jsonl`` file gives one document per line from field ``text_field``.
    """
    if ref in _PACKAGED:
        return _load_news() if ref == "news" else _load_wiki(ref, cache_dir)
    path = Path(ref).expanduser()
    if path.exists():
        return _load_file(path, text_field)
    if _looks_like_path(ref):
        raise DepthlensError(
            f"data file not found: {ref}; check the path, or use a packaged text: "
            f"{', '.join(PACKAGED_NAMES)}"
        )
    _check_typo(ref)
    return _load_hub(ref, text_field)


def _check_typo(ref: str) -> None:
    """A bare name close to a packaged text is a typo, not a hub dataset to download."""
    import difflib

    from depthlens.registry import unknown_choice

    if "/" not in ref and difflib.get_close_matches(ref, PACKAGED_NAMES, n=1, cutoff=0.75):
        raise DepthlensError(unknown_choice("data", ref, list(PACKAGED_NAMES)))


def list_data(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Describe each packaged text: name, description, n_docs, n_chars, available, path.

    Counting the wiki texts cleans the dump once (slow, then cached); an unavailable text
    has ``available=False`` and None counts.
    """
    rows = []
    for name, (filename, description) in _PACKAGED.items():
        row: dict[str, Any] = {
            "name": name,
            "description": description,
            "n_docs": None,
            "n_chars": None,
            "available": False,
            "path": None,
        }
        try:
            row["path"] = str(_gensim_data_file(filename))
            source = load_text(name, cache_dir=cache_dir)
        except DepthlensError:
            rows.append(row)
            continue
        row.update(n_docs=len(source.docs), n_chars=source.n_chars, available=True)
        rows.append(row)
    return rows


def check_disjoint(a: TextSource, b: TextSource) -> None:
    """Raise if any document (exact text, compared by sha256) appears in both sources."""
    hashes_a = {hashlib.sha256(d.encode("utf-8")).digest() for d in a.docs}
    shared = [d for d in b.docs if hashlib.sha256(d.encode("utf-8")).digest() in hashes_a]
    if shared:
        preview = shared[0][:60].replace("\n", " ")
        n = len({hashlib.sha256(d.encode("utf-8")).digest() for d in shared})
        raise DepthlensError(
            f"texts {a.name!r} and {b.name!r} share {n} document(s) (first: {preview!r}...); "
            "evaluate on text not used for calibration, e.g. wiki-calib with wiki-eval"
        )
