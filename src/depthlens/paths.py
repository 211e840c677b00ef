"""Where depthlens keeps its cache (dequantized models, cleaned texts)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$DEPTHLENS_CACHE`` if set, else the per-user cache dir for depthlens."""
    env = os.environ.get("DEPTHLENS_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("depthlens"))
