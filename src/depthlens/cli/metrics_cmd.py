"""``depthlens metrics``: list the metric registry (or print docs/SPEC.md's tables)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_text
from depthlens.metrics.docs import metrics_markdown, splice
from depthlens.metrics.registry import all_metrics, get_metric


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``metrics`` subcommand."""
    p = sub.add_parser(
        "metrics",
        help="list every metric with its definition and paper",
        description="List the metric registry: every metric depthlens computes, with its "
        "one-line definition, shape and source.",
        epilog="examples:\n  depthlens metrics\n  depthlens metrics lens_kl\n"
        "  depthlens metrics --family lens\n  depthlens metrics --markdown",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="show one metric in full")
    p.add_argument("--family", help="only this family (residual, lens, causal, …)")
    p.add_argument("--markdown", action="store_true", help="the tables of docs/SPEC.md")
    p.add_argument(
        "--update-doc",
        metavar="FILE",
        help="rewrite the generated tables inside FILE (e.g. docs/SPEC.md)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    if args.update_doc:
        path = Path(args.update_doc)
        try:
            text = path.read_text(encoding="utf-8")
            atomic_write_text(path, splice(text))
        except ValueError as exc:  # no markers
            raise DepthlensError(f"{path}: {exc}; add the metrics markers first") from exc
        except OSError as exc:
            raise DepthlensError(f"cannot update {path}: {exc.strerror or exc}") from exc
        print(f"updated the metric tables in {path}")
        return 0
    if args.markdown:
        print(metrics_markdown())
        return 0
    if args.name:
        rec = get_metric(args.name)
        for key, value in rec.to_dict().items():
            if key == "papers":
                value = "; ".join(p.cite() for p in rec.papers)
            print(f"{key:>11}: {value}")
        return 0
    for rec in all_metrics(args.family):
        print(f"{rec.family:>9}  {rec.name:<20} {rec.definition}")
    return 0
