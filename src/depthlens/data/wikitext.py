"""Wikipedia dump → plain prose: the cleaning behind the packaged ``wiki`` texts.

Streams the bz2 XML dump page by page and turns each article's wikitext into plain lines
with mwparserfromhell (templates, refs, tables, file/category links and leftover markup
dropped); :mod:`depthlens.data.sources` caches the result and splits it.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_REF_RE = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref\s*>", re.I | re.S)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
_LEFTOVER_TAG_RE = re.compile(r"</?[a-zA-Z][^<>\n]{0,200}>")
_SPACES_RE = re.compile(r"[ \t\u00a0]+")
_NON_TEXT_LINK_RE = re.compile(r"\s*:?\s*(file|image|category|media)\s*:", re.I)
_INTERWIKI_RE = re.compile(r"^[a-z][a-z\-]{1,11}:\S.{0,80}$")
# Lines left over from table markup mwparserfromhell could not parse.
_TABLE_LINE_RE = re.compile(r"^(\{\||\|\}|\|-|\|\+|\||!)")
_DROP_TAGS = {
    "ref",
    "references",
    "table",
    "gallery",
    "math",
    "timeline",
    "imagemap",
    "score",
    "syntaxhighlight",
    "source",
    "code",
    "chem",
    "ce",
    "hiero",
    "graph",
    "mapframe",
}


def clean_wikitext(text: str) -> str:
    """Turn one article's wikitext into plain prose lines (headings kept as lines)."""
    import mwparserfromhell

    text = _REF_RE.sub("", _COMMENT_RE.sub("", text))
    code = mwparserfromhell.parse(text)
    drop: list[Any] = list(code.filter_templates(recursive=True))
    drop += [t for t in code.filter_tags(recursive=True) if _is_dropped_tag(t)]
    drop += [
        link
        for link in code.filter_wikilinks(recursive=True)
        if _NON_TEXT_LINK_RE.match(str(link.title))
    ]
    for node in drop:
        try:
            code.remove(node)
        except ValueError:  # already gone with its parent
            pass
    lines = []
    for line in code.strip_code().splitlines():
        line = _SPACES_RE.sub(" ", _LEFTOVER_TAG_RE.sub("", line)).strip()
        if not line or _TABLE_LINE_RE.match(line) or _INTERWIKI_RE.match(line):
            continue
        if "[[" in line or "{{" in line or "}}" in line or line.startswith("thumb|"):
            continue  # markup the parser could not resolve
        lines.append(line)
    return "\n".join(lines)


def _is_dropped_tag(tag: Any) -> bool:
    return str(tag.tag).strip().lower() in _DROP_TAGS or tag.wiki_markup == "{|"


def _iter_wiki_pages(path: Path) -> Iterator[tuple[str, str, bool, str]]:
    """Yield (title, namespace, is_redirect, wikitext) per page, streaming the bz2 XML."""
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            title = elem.findtext("{*}title") or ""
            ns = (elem.findtext("{*}ns") or "0").strip()
            redirect = elem.find("{*}redirect") is not None
            text = elem.findtext("{*}revision/{*}text") or ""
            elem.clear()
            yield title, ns, redirect, text


def clean_wiki_articles(path: Path, min_chars: int) -> list[tuple[str, str]]:
    """Parse and clean the dump: (title, text) for each kept article, sorted by title."""
    articles = []
    for title, ns, redirect, text in _iter_wiki_pages(path):
        if ns != "0" or redirect or text.lstrip().upper().startswith("#REDIRECT"):
            continue
        cleaned = clean_wikitext(text)
        if len(cleaned) >= min_chars:
            articles.append((title, cleaned))
    return sorted(articles)
