"""quiet_transformers: silences transformers only, never our own stderr or other threads'."""

from __future__ import annotations

import logging
import sys
import threading
import warnings

import pytest
from transformers.utils import logging as hf_logging

from depthlens.models.loading import quiet_transformers


def test_our_stderr_and_other_threads_still_print(capfd: pytest.CaptureFixture[str]) -> None:
    def other() -> None:
        print("from another thread", file=sys.stderr, flush=True)

    with quiet_transformers():
        print("our own message", file=sys.stderr, flush=True)
        t = threading.Thread(target=other)
        t.start()
        t.join()
    err = capfd.readouterr().err
    assert "our own message" in err
    assert "from another thread" in err


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_transformers_logger_and_warnings_are_silenced() -> None:
    log = hf_logging.get_logger("transformers.modeling_utils")
    got = _Collect()
    root = logging.getLogger("transformers")
    root.addHandler(got)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with quiet_transformers():
                log.warning("hidden")
                # A Python warning attributed to a transformers module is dropped ...
                warnings.warn_explicit("hf noise", UserWarning, "x.py", 1, module="transformers.x")
                # ... one of ours is not.
                warnings.warn_explicit("ours", UserWarning, "y.py", 1, module="depthlens.y")
        log.warning("shown")
    finally:
        root.removeHandler(got)
    assert got.messages == ["shown"]
    assert [str(w.message) for w in seen] == ["ours"]


def test_previous_settings_are_restored() -> None:
    old = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    try:
        with quiet_transformers():
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()  # was off before: stays off
        assert hf_logging.get_verbosity() == old
    finally:
        hf_logging.enable_progress_bar()
    with quiet_transformers():
        pass
    assert hf_logging.is_progress_bar_enabled()
