"""SIGTERM: the CLI turns it into an interrupt (exit 130, nothing partial) only while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from checkpointed_profile import CheckpointedProfile, wait_for_checkpoint

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
    job = CheckpointedProfile.make(tmp_path, 40)
    cmd = [sys.executable, "-m", "depthlens", *job.argv()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(job.ckpt, proc)  # the run is inside its batch loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not job.out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
