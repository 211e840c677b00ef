"""Docs tables generated from the registries, so the docs cannot drift from the records.

A table sits between two markers in a markdown file::

    <!-- schemes:begin (generated from the registry: python -m depthlens.doc_tables FILE) -->
    …
    <!-- schemes:end -->

``python -m depthlens.doc_tables docs/*.md`` rewrites every marked table; ``--check``
only reports the stale ones (exit 1). The metric tables of docs/SPEC.md have their own
command (``depthlens metrics --update-doc``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _schemes() -> str:
    from depthlens.train.schemes import SCHEMES

    return SCHEMES.markdown()


def _exit_rules() -> str:
    from depthlens.exit.rules import EXIT_RULES

    return EXIT_RULES.markdown()


def _packaged_models() -> str:
    from depthlens.models.registry import PACKAGED

    return PACKAGED.markdown()


def _cut_methods() -> str:
    from depthlens.cut.methods import CUT_METHODS

    return CUT_METHODS.markdown()


def _draft_kinds() -> str:
    from depthlens.speculate.kinds import DRAFT_KINDS

    return DRAFT_KINDS.markdown()


def _texts() -> str:
    from depthlens.data.sources import TEXTS

    return TEXTS.markdown()


def _text_sources() -> str:
    from depthlens.data.sources import SOURCE_KINDS

    return SOURCE_KINDS.markdown()


def _model_kinds() -> str:
    from depthlens.repr.features import MODEL_KINDS

    return MODEL_KINDS.markdown()


def _labelled_data() -> str:
    from depthlens.data.labelled import LABELLED

    return LABELLED.markdown()


def _model_sources() -> str:
    from depthlens.models.sources import MODEL_SOURCES

    return MODEL_SOURCES.markdown()


#: Table name (the marker's tag) -> its markdown, from the registry.
TABLES: dict[str, Callable[[], str]] = {
    "schemes": _schemes,
    "exit-rules": _exit_rules,
    "packaged-models": _packaged_models,
    "cut-methods": _cut_methods,
    "draft-kinds": _draft_kinds,
    "texts": _texts,
    "text-sources": _text_sources,
    "model-kinds": _model_kinds,
    "labelled-data": _labelled_data,
    "model-sources": _model_sources,
}

_MARKED = re.compile(r"(<!-- ([\w-]+):begin [^\n]*-->\n)(.*?)(<!-- \2:end -->)", re.S)


def begin_marker(tag: str) -> str:
    """The opening marker of table ``tag``."""
    return (
        f"<!-- {tag}:begin (generated from the registry: python -m depthlens.doc_tables FILE) -->"
    )


def splice_tables(doc: str) -> str:
    """``doc`` with every marked table replaced by the registry's current one."""

    def fill(m: re.Match[str]) -> str:
        tag = m.group(2)
        if tag not in TABLES:
            return m.group(0)  # another generator's markers (e.g. the metric tables)
        return f"{m.group(1)}{TABLES[tag]()}\n{m.group(4)}"

    return _MARKED.sub(fill, doc)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or with ``--check`` report) the stale tables of the given files."""
    p = argparse.ArgumentParser(prog="python -m depthlens.doc_tables", description=__doc__)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="report stale files, change nothing")
    args = p.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        new = splice_tables(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
