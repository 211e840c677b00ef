"""Resumable runs: a profile killed with SIGKILL and rerun gives the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpointed_profile import CheckpointedProfile, wait_for_checkpoint
from conftest import random_windows, wrap_tiny
from fixtures_saved import Killed
from safetensors import safe_open

from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.profiling import ProfileOptions, profile
from depthlens.profiling.checkpoint import Checkpointer
from depthlens.profiling.run import run_identity

N_WINDOWS = 8  # batches of one window: 8 checkpoints, the kill lands after the first


def test_crash_mid_run_then_rerun_resumes_and_equals_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process twin of the SIGKILL test: the run dies after 3 of 8 batches."""
    import depthlens.profiling.run as run

    job = CheckpointedProfile.make(tmp_path, N_WINDOWS)
    real, calls = run.run_forward, []

    def dies_at_4th(*a: object, **k: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(run, "run_forward", dies_at_4th)
    with pytest.raises(Killed):
        main(job.argv())
    assert not job.out.exists()
    with safe_open(str(job.ckpt), framework="pt") as fh:  # a whole checkpoint of 3 batches
        assert int((fh.metadata() or {})["batches_done"]) == 3

    calls.clear()
    monkeypatch.setattr(run, "run_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(job.argv()) == 0
    assert len(calls) == N_WINDOWS - 3  # resumed: the first 3 batches were not redone
    monkeypatch.setattr(run, "run_forward", real)
    job.assert_equals_uninterrupted()


@pytest.mark.e2e  # a real process killed with SIGKILL
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    job = CheckpointedProfile.make(tmp_path, N_WINDOWS)
    cmd = [sys.executable, "-m", "depthlens", *job.argv()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(job.ckpt, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not job.out.exists()  # killed mid-run: no result yet ...
    with safe_open(str(job.ckpt), framework="pt") as fh:  # ... but a whole checkpoint
        done = int((fh.metadata() or {})["batches_done"])
    assert 1 <= done < N_WINDOWS

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    job.assert_equals_uninterrupted()  # the same command, in-process, uninterrupted


OPTS = ProfileOptions(batch_size=2, lens_kernel="eager")


def test_resume_uses_saved_sums(tmp_path: Path) -> None:
    """A run restarted from a checkpoint continues from its sums instead of starting over."""
    lm, data = wrap_tiny("llama"), random_windows(n=6)
    full = profile(lm, data, OPTS, progress=False)
    ckpt = tmp_path / "p.ckpt"
    saver = Checkpointer(ckpt, 1, run_identity(lm, data, OPTS))
    # A checkpoint that says "all 3 batches done" with sums of ones: a resumed run must
    # not recompute anything, so its result is exactly what the checkpoint holds.
    probe = Checkpointer(tmp_path / "probe.ckpt", 1, saver.run_id)
    profile(lm, data, OPTS, progress=False, checkpoint_path=probe.path, checkpoint_every=1)
    assert not probe.path.exists()  # removed once the profile is complete
    from depthlens.profiling.run import ProfileSums

    sums = ProfileSums.zeros(lm.num_layers, lm.num_layers // 2, True)
    sums.load_state_dict({k: torch.ones_like(v) for k, v in sums.state_dict().items()})
    saver.maybe_save(sums, 3)
    resumed = profile(lm, data, OPTS, progress=False, checkpoint_path=ckpt, checkpoint_every=1)
    assert resumed.tokens["residual"] == 1  # from the checkpoint, nothing recomputed
    assert resumed.metrics["block_influence"] == [1.0] * lm.num_layers
    assert full.tokens["residual"] == 6 * 15


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    lm, data = wrap_tiny("llama"), random_windows(n=4)
    ckpt = tmp_path / "p.ckpt"
    other = ProfileOptions(batch_size=2, lens_kernel="eager", seed=1)
    from depthlens.metrics.residual import ResidualSums

    Checkpointer(ckpt, 1, run_identity(lm, data, other)).maybe_save(ResidualSums.zeros(1, 1), 1)
    with pytest.raises(DepthlensError, match="belongs to a different run"):
        profile(lm, data, OPTS, progress=False, checkpoint_path=ckpt, checkpoint_every=1)
    assert ckpt.exists()  # never deleted behind the user's back


def test_no_temporary_left_after_a_complete_run(tmp_path: Path) -> None:
    lm, data = wrap_tiny("llama"), random_windows(n=4)
    ckpt = tmp_path / "p.ckpt"
    (tmp_path / ".p.ckpt.tmp").write_bytes(b"half a checkpoint from a killed save")
    profile(lm, data, OPTS, progress=False, checkpoint_path=ckpt, checkpoint_every=1)
    assert list(os.listdir(tmp_path)) == []


def test_checkpoint_of_another_world_size_is_refused(tmp_path: Path) -> None:
    """Rank 0 of a 2-process run saved only its shard; one process must not resume it."""
    from depthlens.metrics.residual import ResidualSums

    lm, data = wrap_tiny("llama"), random_windows(n=4)
    ckpt = tmp_path / "p.ckpt"
    saver = Checkpointer(ckpt, 1, run_identity(lm, data, OPTS, world=2))
    saver.maybe_save(ResidualSums.zeros(1, 1), 1)
    with pytest.raises(DepthlensError, match="belongs to a different run"):
        profile(lm, data, OPTS, progress=False, checkpoint_path=ckpt, checkpoint_every=1)
