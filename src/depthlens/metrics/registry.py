"""One record per metric: the registry that drives the JSON, the tables, the report and the docs.

Each metric is a frozen :class:`MetricRecord` declared once, in the module named after its
family (``metrics/residual.py``, ``metrics/lens.py``, ``causal/skip.py``, ``repr/…``), with
:func:`metric`. Everything that prints, plots or documents a metric looks it up here by its
canonical name, so adding a metric is one record plus its test (see ``docs/ADDING.md``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from depthlens.errors import DepthlensError

#: What one value of the metric is indexed by.
#: block: one value per block (length L); layer: per residual state h_0..h_L (L+1);
#: layer_pair: an (L+1)x(L+1) or L x n matrix; token: a per-token distribution summarised
#: by mean/histogram; scalar: one number.
Shape = Literal["block", "layer", "layer_pair", "block_span", "token", "scalar"]
Plot = Literal["line", "heatmap", "hist", "none"]


@dataclass(frozen=True)
class Paper:
    """Where a definition comes from."""

    authors: str
    year: int
    title: str
    arxiv: str | None = None

    def cite(self) -> str:
        """``Authors (year), Title, arXiv:id``."""
        tail = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.authors} ({self.year}), {self.title}{tail}"


@dataclass(frozen=True)
class MetricRecord:
    """Everything depthlens knows about one metric, declared once."""

    name: str  # canonical key: JSON, CLI, report
    family: str  # residual | lens | causal | repr | ...
    definition: str  # one line, in the notation of docs/SPEC.md
    papers: tuple[Paper, ...]
    shape: Shape
    accumulate: str  # how per-token values are streamed (e.g. "float64 sum + count")
    finalize: str  # how the sums become the reported value
    caption: str  # one sentence for the report: how to read the plot
    label: str = ""  # short column / legend label; the name when empty
    plot: Plot = "line"
    unit: str = ""
    table: bool = False  # shown in the terminal summary table
    deviation: str = ""  # where depthlens deviates from the paper, stated
    #: For streamed per-block metrics: the per-token value from a
    #: :class:`~depthlens.metrics.vectors.BlockVectors`, (N,). The profile sums it over
    #: tokens for every block and reports the mean; no other code is needed.
    per_token: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def short(self) -> str:
        """The label used in tables and legends."""
        return self.label or self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (written into results beside the values)."""
        d = asdict(self)
        d.pop("per_token")
        return d


_REGISTRY: dict[str, MetricRecord] = {}

#: Modules that declare records; imported by :func:`all_metrics` so the registry is complete.
FAMILY_MODULES: list[str] = [
    "depthlens.metrics.catalog.residual",
    "depthlens.metrics.catalog.lens",
    "depthlens.metrics.catalog.causal",
    "depthlens.metrics.catalog.repr",
    "depthlens.metrics.catalog.exit",
]


def metric(record: MetricRecord) -> MetricRecord:
    """Register ``record``; a second record with the same name is a programming error."""
    old = _REGISTRY.get(record.name)
    if old is not None and old != record:
        raise RuntimeError(f"metric {record.name!r} is declared twice ({old.family}, "
                           f"{record.family})")
    _REGISTRY[record.name] = record
    return record


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
    return [r for r in _REGISTRY.values() if family is None or r.family == family]


def streamed_block_records() -> tuple[MetricRecord, ...]:
    """The per-block records the profile computes from ``per_token``, in declaration order.

    Only the residual catalog is imported here (not every family), so the profile does
    not pay for optional families' imports.
    """
    importlib.import_module("depthlens.metrics.catalog.residual")
    return tuple(r for r in _REGISTRY.values() if r.per_token is not None)


def get_metric(name: str) -> MetricRecord:
    """The record named ``name``, or an error with a did-you-mean suggestion."""
    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise DepthlensError(unknown_choice("metric", name, list(_REGISTRY)))


def unknown_choice(what: str, got: str, choices: list[str]) -> str:
    """``unknown METHOD 'x'; did you mean 'y'? choose one of: …`` (one line)."""
    close = difflib.get_close_matches(got, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{got}'{hint} (choose one of: {', '.join(sorted(choices))})"
