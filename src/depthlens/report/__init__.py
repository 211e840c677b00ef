"""Self-contained HTML reports of a profile and of cut / causal results."""

from depthlens.report.build import build_report, headline_rows, write_report

__all__ = ["build_report", "headline_rows", "write_report"]
