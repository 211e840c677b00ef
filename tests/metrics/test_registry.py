"""The metric registry: complete records, generated docs in sync, registry-driven output."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from depthlens.errors import DepthlensError
from depthlens.metrics import registry
from depthlens.metrics.docs import metrics_markdown, splice
from depthlens.metrics.registry import MetricRecord, Paper, all_metrics, get_metric

ROOT = Path(__file__).resolve().parents[2]


def test_every_record_is_complete() -> None:
    recs = all_metrics()
    assert len(recs) >= 20
    for r in recs:
        assert r.papers, r.name
        assert all(1950 <= p.year <= 2030 and p.title for p in r.papers), r.name
        assert r.definition and r.caption and r.accumulate and r.finalize, r.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r.name), r.name


def test_unknown_metric_suggests_the_closest_name() -> None:
    with pytest.raises(DepthlensError, match="did you mean 'lens_kl'"):
        get_metric("lens_kll")


def test_docs_spec_holds_exactly_the_generated_tables() -> None:
    doc = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    assert splice(doc) == doc, "docs/SPEC.md is stale: run `depthlens metrics --markdown`"
    for r in all_metrics():
        assert f"`{r.name}`" in metrics_markdown()


def test_nothing_points_outside_the_repository() -> None:
    for base in ("src", "docs"):
        for p in (ROOT / base).rglob("*"):
            if p.suffix in (".py", ".md", ".html"):
                text = p.read_text(encoding="utf-8", errors="replace")
                assert "../shared" not in text, p
    assert "../shared" not in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def extra_record() -> Iterator[MetricRecord]:
    """A new per-block metric registered only for this test."""
    registry.all_metrics()  # import every family first, so none registers into the scope
    with registry.METRICS.scoped():
        yield registry.metric(
            MetricRecord(
                name="toy_metric",
                family="residual",
                definition="‖h_l‖² (a toy)",
                papers=(Paper("Nobody", 2024, "A toy paper"),),
                shape="block",
                accumulate="sum",
                finalize="mean",
                caption="Toy caption for the test.",
                label="toy",
                table=True,
            )
        )


@pytest.mark.usefixtures("no_pixels")  # the record's text is checked, not pixels
def test_a_new_record_appears_in_table_report_and_docs(extra_record: MetricRecord) -> None:
    from tests_profile_fixture import small_profile

    from depthlens.cli.table import profile_table
    from depthlens.report.build import build_report

    prof = small_profile(extra={"toy_metric": [0.5, 0.25, 0.125, 0.0625]})
    table = profile_table(prof)
    assert " toy" in table.splitlines()[1]  # the header row of the block table
    assert "0.125" in table
    html = build_report(prof, today="2026-01-01")
    assert "Toy caption for the test." in html
    assert "<code>toy_metric</code>" in html and "A toy paper" in html
    assert "`toy_metric`" in metrics_markdown()
