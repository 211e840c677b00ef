"""depthlens: measure how a network uses its depth, cut what it does not use, measure the cost.

The main entry points, imported lazily so that ``import depthlens`` stays fast::

    from depthlens import load_model, load_text, make_windows, profile, ProfileOptions
"""

from __future__ import annotations

from typing import Any

from depthlens._version import SCHEMA_VERSION, __version__

_LAZY = {
    "load_model": "depthlens.models",
    "load_text": "depthlens.data",
    "make_windows": "depthlens.data",
    "profile": "depthlens.profiling",
    "Profile": "depthlens.profiling",
    "ProfileOptions": "depthlens.profiling",
    "plan_cut": "depthlens.cut",
    "apply_cut_": "depthlens.cut",
    "save_pruned": "depthlens.cut",
    "DepthlensError": "depthlens.errors",
}

__all__ = ["SCHEMA_VERSION", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depthlens' has no attribute {name!r}")
