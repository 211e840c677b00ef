"""SIGKILL + resume ends with the uninterrupted run's weights; NaN stops with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_saved import Killed
from safetensors.torch import load_file
from train_helpers import tiny_args, write_text

from depthlens.cli.main import main
from depthlens.train.checkpoint import checkpoint_path

# The killed run: the real CLI, each step slowed so the kill lands mid-run.
SLOW_RUN = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
import depthlens.train.loop as loop
real = loop.step_loss
def slow(*a, **k):
    time.sleep(0.25)
    return real(*a, **k)
loop.step_loss = slow
from depthlens.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_crash_then_resume_gives_identical_weights(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """In-process twin of the SIGKILL test below: the run dies in step 8 of 12."""
    import depthlens.train.loop as loop

    text = write_text(tmp_path / "t.txt")
    ref, run = tmp_path / "ref", tmp_path / "run"
    steps = 12
    assert main(tiny_args(text, ref, steps, **{"--checkpoint-every": 3})) == 0
    args = tiny_args(text, run, steps, **{"--checkpoint-every": 3})
    real, calls = loop.step_loss, []

    def dies_in_step_8(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 8:
            raise Killed
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(loop, "step_loss", dies_in_step_8)
        with pytest.raises(Killed):
            main(args)
    assert not (run / "train.json").exists()
    assert torch.load(checkpoint_path(run), weights_only=True)["step"] == 6
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0
    assert "from step 6" in capsys.readouterr().err
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not (run / "checkpoint").exists()  # resume files gone once finished


@pytest.mark.e2e  # a real process killed with SIGKILL
def test_sigkill_then_resume_gives_identical_weights(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    text = write_text(tmp_path / "t.txt")
    ref, run = tmp_path / "ref", tmp_path / "run"
    steps = 12
    assert main(tiny_args(text, ref, steps, **{"--checkpoint-every": 3})) == 0
    args = tiny_args(text, run, steps, **{"--checkpoint-every": 3})
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(torch.get_num_threads()), *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    ckpt = checkpoint_path(run)
    deadline = time.time() + 120
    while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (run / "train.json").exists()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < steps
    capsys.readouterr()
    assert main([a for a in args if a != "--quiet"]) == 0
    assert f"from step {step}" in capsys.readouterr().err
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not (run / "checkpoint").exists()  # resume files gone once finished


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import depthlens.train.loop as loop

    real, calls = loop.step_loss, []

    def poisoned(*a, **k):  # noqa: ANN002, ANN003, ANN202
        loss = real(*a, **k)
        calls.append(1)
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(loop, "step_loss", poisoned)
    text = write_text(tmp_path / "t.txt")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(tiny_args(text, out, 10, **{"--checkpoint-every": 2})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "nan at step 6" in err[0] and "last good checkpoint (step 4)" in err[0]
    assert torch.load(checkpoint_path(out), weights_only=True)["step"] == 4
    assert not (out / "train.json").exists()


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"--width": 18, "--heads": 4}, "not divisible by --heads"),
        ({"--depth": 0}, "--depth must be at least 1"),
        ({"--tokens": 10}, "smaller than one batch"),
        ({"--scheme": "pre_ln"}, "did you mean 'pre-ln'"),
    ],
)
def test_bad_config_one_line_exit_2_before_work(
    tmp_path: Path,
    capsys,
    over: dict[str, object],
    needle: str,  # noqa: ANN001
) -> None:
    out = tmp_path / "never"
    capsys.readouterr()
    rc = main(tiny_args(tmp_path / "missing.txt", out, **over))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()  # nothing done: the text was not even read (it does not exist)
