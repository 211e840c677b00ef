"""One record per metric: the registry that drives the JSON, the tables, the report and the docs.

Each metric is a frozen :class:`~depthlens.metrics.records.MetricRecord` declared once, in
the catalog module named after its family (``metrics/catalog/residual.py``, ``lens.py``,
``causal.py``, ``repr.py``, ``exit.py``), with :func:`~depthlens.metrics.records.metric`.
Everything that prints, plots or documents a metric looks it up here by its canonical
name, so adding a metric is one record plus its test (see ``docs/ADDING.md``).

This module sits above the catalog (it imports the families before every lookup); the
record types and the registry itself live in :mod:`depthlens.metrics.records`, below it.
"""

from __future__ import annotations

import importlib

from depthlens.metrics.records import METRICS, MetricRecord, Paper, metric

__all__ = [
    "FAMILY_MODULES",
    "METRICS",
    "MetricRecord",
    "Paper",
    "all_metrics",
    "get_metric",
    "metric",
    "streamed_block_records",
    "streamed_lens_records",
]

#: Modules that declare records; imported by :func:`all_metrics` so the registry is complete.
FAMILY_MODULES: list[str] = [
    "depthlens.metrics.catalog.residual",
    "depthlens.metrics.catalog.lens",
    "depthlens.metrics.catalog.causal",
    "depthlens.metrics.catalog.repr",
    "depthlens.metrics.catalog.exit",
]


def _load_all() -> None:
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency, not an absent optional family
                raise


def all_metrics(family: str | None = None) -> list[MetricRecord]:
    """Every registered record (of one family), in declaration order."""
    _load_all()
    return [r for r in METRICS.values() if family is None or r.family == family]


def streamed_block_records() -> tuple[MetricRecord, ...]:
    """The per-block records the profile computes from ``per_token``, in declaration order.

    Only the residual catalog is imported here (not every family), so the profile does
    not pay for optional families' imports.
    """
    importlib.import_module("depthlens.metrics.catalog.residual")
    return tuple(r for r in METRICS.values() if r.per_token is not None)


def streamed_lens_records() -> tuple[MetricRecord, ...]:
    """The per-depth lens records the profile and ``lens eval`` compute, in declaration order.

    Only the lens catalog is imported here, as for :func:`streamed_block_records`.
    """
    importlib.import_module("depthlens.metrics.catalog.lens")
    return tuple(r for r in METRICS.values() if r.per_lens_token is not None)


def get_metric(name: str) -> MetricRecord:
    """The record named ``name``, or an error with a did-you-mean suggestion."""
    _load_all()
    return METRICS.get(name)
