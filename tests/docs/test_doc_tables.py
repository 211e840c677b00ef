"""The registry tables in docs/*.md are exactly what the registries generate."""

from __future__ import annotations

from pathlib import Path

from depthlens.doc_tables import TABLES, begin_marker, main, splice_tables

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_docs_table_is_current() -> None:
    stale = [
        p.name
        for p in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
        if splice_tables(p.read_text("utf-8")) != p.read_text("utf-8")
    ]
    assert not stale, (
        f"stale registry tables in {stale}: "
        "run `python -m depthlens.doc_tables docs/*.md README.md`"
    )


def test_the_scheme_and_exit_rule_tables_are_in_the_docs() -> None:
    assert begin_marker("schemes") in (DOCS / "TRAIN.md").read_text("utf-8")
    assert begin_marker("exit-rules") in (DOCS / "TUNED_LENS.md").read_text("utf-8")


def test_splice_replaces_a_stale_table_and_leaves_other_markers(tmp_path: Path) -> None:
    other = "<!-- metrics:begin (another generator) -->\nkeep me\n<!-- metrics:end -->\n"
    doc = f"intro\n{begin_marker('schemes')}\n| old |\n<!-- schemes:end -->\n{other}"
    new = splice_tables(doc)
    assert "| old |" not in new and "`lns`" in new and new.endswith(other)
    assert splice_tables(new) == new
    f = tmp_path / "d.md"
    f.write_text(doc, encoding="utf-8")
    assert main([str(f), "--check"]) == 1 and f.read_text("utf-8") == doc  # check: no change
    assert main([str(f)]) == 0 and f.read_text("utf-8") == new
    assert main([str(f), "--check"]) == 0


def test_every_table_renders_every_record() -> None:
    from depthlens.exit.rules import EXIT_RULES
    from depthlens.models.registry import PACKAGED
    from depthlens.speculate.kinds import DRAFT_KINDS
    from depthlens.train.schemes import SCHEMES

    for tag, registry in (
        ("schemes", SCHEMES),
        ("exit-rules", EXIT_RULES),
        ("packaged-models", PACKAGED),
        ("draft-kinds", DRAFT_KINDS),
    ):
        table = TABLES[tag]()
        assert len(table.splitlines()) == 2 + len(registry), tag
        assert all(f"`{name}" in table for name in registry), tag
