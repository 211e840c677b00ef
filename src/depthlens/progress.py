"""Progress bars with ETA on stderr (tqdm), off when not wanted or not on rank 0."""

from __future__ import annotations

import sys
from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def progress_bar(
    total: int, desc: str, *, enabled: bool = True, initial: int = 0, unit: str = "batch"
) -> Any:
    """A tqdm bar with ETA, or a no-op object with the same two methods.

    Long work counts what a user can relate to (``unit="tok"`` for tokens, ``"run"`` for
    timed runs), so the bar moves within seconds instead of sitting at ``0/1``.
    """
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        unit_scale=unit == "tok",
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
