"""SIGTERM: the CLI turns it into an interrupt (exit 130, nothing partial) only while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_saved import save_tiny, write_text

from depthlens.cli.main import _sigterm_as_interrupt


def test_sigterm_raises_keyboard_interrupt_inside_and_restores_after() -> None:
    seen: list[int] = []

    def previous(signum: int, _frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler runs at the next bytecode boundary
        assert signal.getsignal(signal.SIGTERM) is previous
        os.kill(os.getpid(), signal.SIGTERM)  # our earlier handler is back in charge
        time.sleep(0.05)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigint_handler_is_left_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    with _sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.e2e  # a real process sent SIGTERM; in-process twin:
# tests/robustness/test_robustness.py::test_sigterm_is_an_interrupt
def test_sigterm_during_a_run_exits_130_without_output(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "m")
    text = write_text(tmp_path / "t.txt", 16 * 40 + 50)
    out = tmp_path / "out.json"
    ckpt = tmp_path / "out.json.ckpt"
    cmd = [
        sys.executable,
        "-m",
        "depthlens",
        "profile",
        str(model),
        "--data",
        str(text),
        "--seq-len",
        "16",
        "--max-tokens",
        str(16 * 40),
        "--batch-size",
        "1",
        "--lens-kernel",
        "eager",
        "--checkpoint-every",
        "1",
        "--quiet",
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not ckpt.exists():  # the run is inside its batch loop once a checkpoint exists
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail("the run ended or stalled before its first checkpoint")
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
