"""Silence transformers while it loads or saves, without touching ``sys.stderr``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own logger, progress bars and warnings while loading or saving.

    Scoped to transformers: ``sys.stderr`` is left alone, so our own messages and other
    threads' output still appear (redirecting stderr would swallow them process-wide).
    The previous verbosity and progress-bar setting are restored on exit.
    """
    import warnings

    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"transformers(\.|$)")
            yield
    finally:
        hf_logging.set_verbosity(old)
        if bars_were_on:
            hf_logging.enable_progress_bar()
