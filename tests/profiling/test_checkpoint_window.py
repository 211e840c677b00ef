"""A profile killed after its sums are final but before its output is written resumes.

The window: ``profile --causal`` runs the skip sweep after the profile's own pass, then
writes the JSON. A SIGKILL there must leave the checkpoint (so a rerun redoes no profile
forward) and no output; the rerun writes the same result an uninterrupted run writes and
then deletes the checkpoint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from checkpointed_profile import CheckpointedProfile
from fixtures_saved import Killed
from safetensors import safe_open

from depthlens.cli.main import main

N_WINDOWS = 4

# Run the real CLI in a child; die by SIGKILL when the skip sweep (after the pass) starts.
KILL_IN_WINDOW = """
import os, signal, sys
import depthlens.causal.skip as skip
skip.skip_sweep = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from depthlens.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
# Rerun, counting the profile pass's forwards (the skip sweep's are not counted).
COUNT_FORWARDS = """
import sys
import depthlens.profiling.run as run
calls = []
real = run.run_forward
run.run_forward = lambda *a, **k: calls.append(1) or real(*a, **k)
from depthlens.cli.main import main
rc = main(sys.argv[1:])
print("profile forwards:", len(calls))
sys.exit(rc)
"""


def _assert_resumed_output(job: CheckpointedProfile) -> None:
    assert "causal" in json.loads(job.out.read_text())["extra"]
    job.assert_equals_uninterrupted("--causal")


def test_crash_between_pass_and_write_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process twin of the SIGKILL test below: the run dies when the skip sweep starts."""
    import depthlens.causal.skip as skip
    import depthlens.profiling.run as run

    job = CheckpointedProfile.make(tmp_path, N_WINDOWS)
    args = job.argv("--causal")

    def killed(*_a: object, **_k: object) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(skip, "skip_sweep", killed)
        with pytest.raises(Killed):
            main(args)
    assert not job.out.exists()
    with safe_open(str(job.ckpt), framework="pt") as fh:  # the final sums survived
        assert int((fh.metadata() or {})["batches_done"]) == N_WINDOWS

    real, calls = run.run_forward, []
    with monkeypatch.context() as m:  # the rerun counts the profile pass's forwards
        m.setattr(run, "run_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
        assert main(args) == 0
    assert calls == []  # resumed: no batch was profiled again
    assert not job.ckpt.exists()  # deleted once the output was on disk

    _assert_resumed_output(job)


@pytest.mark.e2e  # a real process killed with SIGKILL
def test_sigkill_between_pass_and_write_resumes(tmp_path: Path) -> None:
    job = CheckpointedProfile.make(tmp_path, N_WINDOWS)
    args = job.argv("--causal")

    killed = subprocess.run(
        [sys.executable, "-c", KILL_IN_WINDOW, *args], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not job.out.exists()
    with safe_open(str(job.ckpt), framework="pt") as fh:  # the final sums survived the kill
        assert int((fh.metadata() or {})["batches_done"]) == N_WINDOWS

    rerun = subprocess.run(
        [sys.executable, "-c", COUNT_FORWARDS, *args], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "profile forwards: 0" in rerun.stdout  # resumed: no batch was profiled again
    assert not job.ckpt.exists()  # deleted once the output was on disk

    _assert_resumed_output(job)
