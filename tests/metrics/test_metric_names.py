"""A metric's name is spelled once in src/: in its record. Everything else uses ``RECORD.name``.

So renaming a metric, or finding every place that reads it, is one grep for its record
constant; a quoted copy of the name elsewhere would silently stop matching. Code that
iterates the records (docs, tables, the report's generic plots) never spells a name.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import depthlens
from depthlens.metrics.registry import all_metrics

SRC = Path(depthlens.__file__).parent


def quoted_uses(name: str, text: str) -> list[int]:
    """Line numbers where ``name`` appears as a whole quoted string ("name" or 'name')."""
    pattern = re.compile(rf"""(["']){re.escape(name)}\1""")
    return [i for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def test_the_scan_finds_a_planted_name() -> None:
    text = 'x = m["lens_kl"]\ny = m[LENS_KL.name]\nz = "lens_kl_rev"\n'
    assert quoted_uses("lens_kl", text) == [1]
    assert quoted_uses("lens_kl_rev", text) == [3]


def test_every_metric_name_is_spelled_only_in_its_record() -> None:
    records = all_metrics()
    assert len(records) > 30  # the scan really covers the catalog
    sources = {f: f.read_text(encoding="utf-8") for f in sorted(SRC.rglob("*.py"))}
    offenders = []
    for rec in records:
        home = Path(inspect.getfile(_module_of(rec.name))).resolve()
        for f, text in sources.items():
            if f.resolve() == home:
                continue
            offenders += [
                f"{f.relative_to(SRC)}:{n} {rec.name!r}" for n in quoted_uses(rec.name, text)
            ]
    assert not offenders, (
        "metric names spelled outside their record (use the record constant's .name):\n"
        + "\n".join(offenders)
    )


def _module_of(name: str) -> object:
    """The catalog module that declares the record ``name``."""
    import importlib

    from depthlens.metrics.registry import FAMILY_MODULES

    for mod_name in FAMILY_MODULES:
        mod = importlib.import_module(mod_name)
        if any(getattr(v, "name", None) == name for v in vars(mod).values()):
            return mod
    raise AssertionError(f"no catalog module declares {name!r}")
