"""A text as results see it: its documents and the identity that traces results back to it.

A :class:`TextSource` is a tuple of documents plus a JSON-able identity (kind, name, sha256
of the documents, counts, split rule); the text itself is never written into results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_source(name: str, docs: Iterable[str], **identity: Any) -> TextSource:
    """A source of ``docs`` whose identity is ``identity`` (with its ``kind``) and the counts."""
    docs_t = tuple(docs)
    ident = {"kind": identity.pop("kind"), "name": name, **identity}
    ident.update(sha256=docs_sha256(docs_t), n_docs=len(docs_t), n_chars=sum(map(len, docs_t)))
    return TextSource(name=name, docs=docs_t, identity=ident)
