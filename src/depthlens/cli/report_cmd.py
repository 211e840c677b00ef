"""``depthlens report``: one self-contained HTML file with the plots."""

from __future__ import annotations

import argparse

from depthlens.cli.common import add_output_args, status
from depthlens.cli.table import render_table


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser(
        "report",
        help="self-contained HTML report of a profile (and cut / causal results)",
        description="Write one HTML file (every image and script inline, no network) with "
        "per-layer plots of a profile, plus perplexity / speed-up of cut results and the "
        "causal analyses when given.",
        epilog="example: depthlens report out/profile.json out/compare.json out/plan.json "
        "-o out/report.html",
    )
    p.add_argument("profile", metavar="PROFILE.json", help="from `depthlens profile -o`")
    p.add_argument(
        "results",
        nargs="*",
        metavar="RESULT.json",
        help="compare / prune_quality / plan / skip / think results",
    )
    add_output_args(
        p, "the HTML file to write", required=True, quiet_help="no progress bar or table"
    )
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Build and write the report, print the headline numbers."""
    from depthlens.report import write_report

    path, rows = write_report(
        [args.profile, *args.results], args.output, args.overwrite, progress=not args.quiet
    )
    if not args.quiet:
        print(render_table(["headline", "value"], rows))
    status(f"wrote {path}")
    return 0
