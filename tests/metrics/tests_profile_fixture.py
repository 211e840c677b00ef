"""A small real profile of a tiny random model, for tests of what consumes profiles."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import random_windows, wrap_tiny

from depthlens.profiling import ProfileOptions, profile


def small_profile(extra: dict[str, Any] | None = None) -> Any:
    """Profile tiny-llama on random windows; ``extra`` metrics are added to the result."""
    lm = wrap_tiny("llama")
    prof = profile(lm, random_windows(), ProfileOptions(lens_kernel="eager"), progress=False)
    if extra:
        prof = dataclasses.replace(prof, metrics={**prof.metrics, **extra})
    return prof
