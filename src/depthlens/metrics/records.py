"""The metric record types and the registry they are declared into.

Each metric is a frozen :class:`MetricRecord` declared once, in the catalog module of its
family (``metrics/catalog/<family>.py``), with :func:`metric`. This module sits below the
catalog: the catalog imports it, never the other way round. Look records up through
:mod:`depthlens.metrics.registry`, which imports every family first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from depthlens.registry import Registry

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
    #: For streamed lens metrics: the per-token values from a
    #: :class:`~depthlens.metrics.lens.LensView` (one depth's readout), over the tokens the
    #: value is defined on. The profile and ``lens eval`` sum them per depth and report
    #: sum / count; no other code is needed.
    per_lens_token: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def short(self) -> str:
        """The label used in tables and legends."""
        return self.label or self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (written into results beside the values)."""
        d = asdict(self)
        d.pop("per_token")
        d.pop("per_lens_token")
        d["papers"] = list(d["papers"])  # as JSON reads it back
        return d

    def source(self) -> str:
        """The papers, and the stated deviation from them (the docs table's last column)."""
        papers = "; ".join(p.cite() for p in self.papers)
        return papers + (f" **Deviation:** {self.deviation}." if self.deviation else "")


#: Every declared metric, in declaration order (complete once each family is imported:
#: use :func:`depthlens.metrics.registry.all_metrics` / ``get_metric``).
METRICS: Registry[MetricRecord] = Registry(
    "metric",
    columns=(
        ("name", lambda r: f"`{r.name}`"),
        ("definition", lambda r: r.definition),
        ("shape", lambda r: r.shape),
        ("reported value", lambda r: r.finalize),
        ("source", lambda r: r.source()),
    ),
)


def metric(record: MetricRecord) -> MetricRecord:
    """Register ``record``; a second record with the same name is a programming error."""
    return METRICS.register(record)
