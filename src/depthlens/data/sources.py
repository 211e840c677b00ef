"""Text sources: the packaged offline texts, local files, and (when installed) hub datasets.

Two registries: :data:`TEXTS`, one :class:`PackagedText` record per packaged text (its
file, its description, its loader), and :data:`SOURCE_KINDS`, one :class:`SourceKind` per
kind of reference (packaged, file, hub), tried in order by :func:`load_text`. Each load
gives a :class:`~depthlens.data.text.TextSource`: the documents and the identity that
results record (its ``kind`` is the name of the kind that loaded it).

Packaged texts come from files inside the ``gensim==4.4.0`` wheel (read as data; gensim is
never imported): ``wiki`` is a shortened English Wikipedia dump, cleaned with
mwparserfromhell and split deterministically into ``wiki-calib`` and ``wiki-eval``;
``news`` is the Lee news corpus (one article per line).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.data.text import TextSource, docs_sha256, file_sha256, make_source
from depthlens.data.textfile import parse_jsonl, read_text_file
from depthlens.data.wikitext import clean_wiki_articles, clean_wikitext
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_json
from depthlens.paths import default_cache_dir
from depthlens.registry import Registry, UnknownChoiceError, unknown_choice

# Re-exported: the cleaning lives in data/wikitext.py, the source type in data/text.py.
__all__ = ["TextSource", "clean_wikitext", "docs_sha256"]

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
    source_sha = file_sha256(path)
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


def _wiki(keep: Callable[[int], bool]) -> Callable[[str, Path | None], TextSource]:
    """The loader of the wiki articles whose index (sorted by title) ``keep`` admits."""

    def load(name: str, cache_dir: Path | None) -> TextSource:
        path, source_sha, articles = _wiki_articles(cache_dir)
        return make_source(
            name,
            (text for i, (_, text) in enumerate(articles) if keep(i)),
            kind="packaged",
            path=str(path),
            source_sha256=source_sha,
            split=WIKI_SPLIT_RULE,
            cleaning=WIKI_CLEANING,
        )

    return load


def _held_out(i: int) -> bool:
    return i % WIKI_EVAL_EVERY == WIKI_EVAL_EVERY - 1


def _load_news(name: str, cache_dir: Path | None) -> TextSource:
    path = _gensim_data_file(NEWS_FILE)
    text = path.read_text(encoding="utf-8", errors="replace")
    docs = [line.strip() for line in text.splitlines() if line.strip()]
    return make_source(
        name,
        docs,
        kind="packaged",
        path=str(path),
        source_sha256=file_sha256(path),
        split="one article per non-empty line",
    )


@dataclass(frozen=True)
class PackagedText:
    """A text that ships inside the gensim wheel: its file there, and how it is read."""

    name: str
    filename: str  # in the wheel's test data
    description: str
    load: Callable[[str, Path | None], TextSource]  # (its name, cache dir) -> the text


TEXTS: Registry[PackagedText] = Registry(
    "data",
    columns=(
        ("name", lambda t: f"`{t.name}`"),
        ("text", lambda t: t.description),
        ("file in the gensim wheel", lambda t: f"`{t.filename}`"),
    ),
)
TEXTS.register(
    PackagedText(
        "wiki",
        WIKI_FILE,
        "English Wikipedia articles (shortened 2016 dump), cleaned; all",
        _wiki(lambda i: True),
    )
)
TEXTS.register(
    PackagedText(
        "wiki-calib",
        WIKI_FILE,
        "the wiki articles minus wiki-eval: use for calibration",
        _wiki(lambda i: not _held_out(i)),
    )
)
TEXTS.register(
    PackagedText(
        "wiki-eval",
        WIKI_FILE,
        "every 5th wiki article by title: held-out evaluation",
        _wiki(_held_out),
    )
)
TEXTS.register(
    PackagedText(
        "news",
        NEWS_FILE,
        "Lee news corpus, 300 short news articles: out-of-domain evaluation",
        _load_news,
    )
)
PACKAGED_NAMES: tuple[str, ...] = tuple(TEXTS)


# --------------------------------------------------------------------------- local files


def _load_file(path: Path, text_field: str) -> TextSource:
    suffix = path.suffix.lower()
    if suffix == ".json":
        raise DepthlensError(
            f"data file {path} is .json; pass a .jsonl file (one JSON object per line) or "
            "a plain .txt file"
        )
    text = read_text_file(path)
    if suffix in (".jsonl", ".ndjson"):
        docs = parse_jsonl(path, text, text_field)
        split = f"one document per line, field {text_field!r}"
    else:
        docs = [text.strip()]
        split = "whole file is one document"
    return make_source(
        str(path),
        docs,
        kind="file",
        path=str(path.resolve()),
        source_sha256=file_sha256(path),
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
    return make_source(ref, docs, kind="hub", split=split)


# --------------------------------------------------------------------------- public API


def _resolve_hub(ref: str, text_field: str, cache_dir: Path | None) -> TextSource:
    """The fallback kind: refuse a missing file or a mistyped packaged name, else the hub."""
    if _looks_like_path(ref):
        raise DepthlensError(
            f"data file not found: {ref}; check the path, or use a packaged text: "
            f"{', '.join(PACKAGED_NAMES)}"
        )
    # A bare name close to a packaged text is a typo, not a hub dataset to download.
    if "/" not in ref and difflib.get_close_matches(ref, PACKAGED_NAMES, n=1, cutoff=0.75):
        raise UnknownChoiceError(unknown_choice("data", ref, list(PACKAGED_NAMES)))
    return _load_hub(ref, text_field)


@dataclass(frozen=True)
class SourceKind:
    """One kind of text reference; its name is the ``kind`` that results record."""

    name: str
    takes: str  # the references it takes, for the docs
    accepts: Callable[[str], bool]
    load: Callable[[str, str, Path | None], TextSource]  # (ref, text field, cache dir)


#: Tried in order: the first kind that accepts a reference loads it.
SOURCE_KINDS: Registry[SourceKind] = Registry(
    "text source kind",
    columns=(("kind", lambda k: f"`{k.name}`"), ("reference", lambda k: k.takes)),
)
SOURCE_KINDS.register(
    SourceKind(
        "packaged",
        "a packaged name (wins over a file of that name; write `./news` for the file)",
        accepts=lambda ref: ref in TEXTS,
        load=lambda ref, _field, cache_dir: TEXTS[ref].load(ref, cache_dir),
    )
)
SOURCE_KINDS.register(
    SourceKind(
        "file",
        "an existing file: `.jsonl`/`.ndjson` gives one document per line (`--text-field`), "
        "any other file is one document",
        accepts=lambda ref: Path(ref).expanduser().exists(),
        load=lambda ref, field, _cache: _load_file(Path(ref).expanduser(), field),
    )
)
SOURCE_KINDS.register(
    SourceKind(
        "hub",
        "anything else: split `train` of a hub dataset `id` or `id:config` (needs `datasets` "
        "and the network); a path that does not exist or a near-miss of a packaged name is "
        "refused instead",
        accepts=lambda ref: True,
        load=_resolve_hub,
    )
)


def load_text(ref: str, *, text_field: str = "text", cache_dir: Path | None = None) -> TextSource:
    """Load a text by reference: a packaged name, a local .txt/.jsonl file, or a hub id.

    The first of :data:`SOURCE_KINDS` that accepts ``ref`` loads it. Packaged names
    (``wiki``, ``wiki-calib``, ``wiki-eval``, ``news``) win over a file of the same name;
    write ``./news`` for the file. A ``.txt`` (or any non-JSONL) file is one document; a
    ``.jsonl`` file gives one document per line from field ``text_field``.
    """
    kind = next(k for k in SOURCE_KINDS.values() if k.accepts(ref))
    return kind.load(ref, text_field, cache_dir)


def list_data(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Describe each packaged text: name, description, n_docs, n_chars, available, path.

    Counting the wiki texts cleans the dump once (slow, then cached); an unavailable text
    has ``available=False`` and None counts.
    """
    rows = []
    for text in TEXTS.values():
        row: dict[str, Any] = {
            "name": text.name,
            "description": text.description,
            "n_docs": None,
            "n_chars": None,
            "available": False,
            "path": None,
        }
        try:
            row["path"] = str(_gensim_data_file(text.filename))
            source = text.load(text.name, cache_dir)
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
