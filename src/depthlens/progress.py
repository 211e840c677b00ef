"""Progress bars with ETA on stderr (tqdm), off when not wanted or not on rank 0."""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Iterator
from typing import Any

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """``--quiet`` for the whole process: also the bars of libraries we call (GGUF loading)."""
    global _QUIET
    _QUIET = quiet


def quiet() -> bool:
    """Whether ``--quiet`` was asked for (see :func:`set_quiet`)."""
    return _QUIET


@contextlib.contextmanager
def tqdm_off_if_quiet(module: str) -> Iterator[None]:
    """Under ``--quiet``, no bar from the ``tqdm`` that ``module`` imported.

    transformers draws its "de-quantizing GGUF tensors" bar with tqdm directly, past its
    own progress-bar switch, so that module's ``tqdm`` is swapped for a disabled one.
    """
    mod: Any = importlib.import_module(module)
    real = getattr(mod, "tqdm", None)
    if not _QUIET or real is None:
        yield
        return
    mod.tqdm = functools.partial(real, disable=True)
    try:
        yield
    finally:
        mod.tqdm = real


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
