"""The failure table of docs/ROBUSTNESS.md: one test per row.

Each test runs the real CLI entry point (``main(argv)`` in-process, or ``python -m
depthlens`` in a subprocess where a signal is involved) on a tiny model saved to disk and
checks the three columns of the table: the one-line message, the exit code, and what is
left on disk.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_run import (
    assert_interrupted,
    assert_one_error,
    profile_argv,
    prune_argv,
    run_cli,
    small_argv,
)
from conftest import random_windows, wrap_tiny
from fixtures_saved import save_tiny, write_text
from tiny_models import tiny_model

from depthlens.errors import DepthlensError
from depthlens.profiling import ProfileOptions, profile
from depthlens.profiling.result import Profile, check_profile_matches


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- model paths ---------------------------------------------------------------------------


def test_model_path_missing(capsys: Any, tmp_path: Path, text: Path) -> None:
    rc, err = run_cli(capsys, *profile_argv(tmp_path / "nope", text, tmp_path / "o.json"))
    assert_one_error(rc, err, "model path not found:")
    assert files(tmp_path) == []


def test_model_dir_unreadable(
    capsys: Any, tmp_path: Path, text: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = shutil.copytree(model_dir, tmp_path / "locked")
    if os.geteuid() != 0:
        bad.chmod(0)
    else:  # root reads anything: simulate what chmod 000 does for everyone else
        real = pathlib.Path.is_file

        def is_file(self: Path) -> bool:
            if self.parent == bad:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(self)

        monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    try:
        rc, err = run_cli(capsys, *profile_argv(bad, text, tmp_path / "o.json"))
    finally:
        bad.chmod(0o755)
    assert_one_error(rc, err, "cannot read the model directory")
    assert "Permission denied" in err
    assert files(tmp_path) == ["locked"]


def test_directory_not_a_model(capsys: Any, tmp_path: Path, text: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    rc, err = run_cli(capsys, *profile_argv(tmp_path / "notes", text, tmp_path / "o.json"))
    assert_one_error(rc, err, "is a directory but not a Hugging Face model (no config.json)")
    assert files(tmp_path) == ["notes"]


def test_corrupted_safetensors(capsys: Any, tmp_path: Path, text: Path, model_dir: Path) -> None:
    bad = shutil.copytree(model_dir, tmp_path / "bad")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated download
    rc, err = run_cli(capsys, *profile_argv(bad, text, tmp_path / "o.json"))
    assert_one_error(rc, err, "could not load the weights in")
    assert not (tmp_path / "o.json").exists()


def _pickle_only(model_dir: Path, dest: Path) -> Path:
    d = shutil.copytree(model_dir, dest)
    state = tiny_model("llama").state_dict()
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    return d


def test_pickle_only_refused(capsys: Any, tmp_path: Path, text: Path, model_dir: Path) -> None:
    d = _pickle_only(model_dir, tmp_path / "pkl")
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    assert_one_error(rc, err, "has only pickle weights")
    assert "--allow-pickle" in err
    assert files(tmp_path) == ["pkl"]


def test_pickle_only_allowed(capsys: Any, tmp_path: Path, text: Path, model_dir: Path) -> None:
    d = _pickle_only(model_dir, tmp_path / "pkl")
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json", "--allow-pickle"))
    assert rc == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["model"]["num_layers"] == 4


def test_unknown_model_type(capsys: Any, tmp_path: Path, text: Path, model_dir: Path) -> None:
    d = shutil.copytree(model_dir, tmp_path / "odd")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "florbnet"
    cfg["architectures"] = ["FlorbnetForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    assert_one_error(rc, err, "cannot read the config in")
    assert "--trust-remote-code" in err
    assert files(tmp_path) == ["odd"]


def test_hub_id_offline(capsys: Any, tmp_path: Path, text: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest
    t0 = time.monotonic()
    rc, err = run_cli(capsys, *profile_argv("someorg/no-such-model", text, tmp_path / "o.json"))
    assert time.monotonic() - t0 < 30  # fails fast: no network retries
    assert_one_error(rc, err, "hub model 'someorg/no-such-model' is not available")
    assert "offline" in err
    assert files(tmp_path) == []


# -- data ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "contains no text"),
        (b"\x00\x01\x02binary\x00" * 20, "looks binary"),
        ("caf\u00e9 w5 w6".encode("latin-1"), "is not valid UTF-8"),
        (b"w5 w6 w7 w8", "fewer than one window of --seq-len 16"),
    ],
    ids=["empty", "binary", "non-utf8", "too-short"],
)
def test_bad_text(
    capsys: Any, tmp_path: Path, model_dir: Path, content: bytes, message: str
) -> None:
    data = tmp_path / "d.txt"
    data.write_bytes(content)
    rc, err = run_cli(capsys, *profile_argv(model_dir, data, tmp_path / "o.json"))
    assert_one_error(rc, err, message)
    assert files(tmp_path) == ["d.txt"]


def test_data_missing_and_unreadable(
    capsys: Any, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, err = run_cli(capsys, *profile_argv(model_dir, tmp_path / "nope.txt", tmp_path / "o.json"))
    assert_one_error(rc, err, "data file not found:")
    locked = write_text(tmp_path / "locked.txt", 100)
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads anything: simulate what chmod 000 does for everyone else
        real = pathlib.Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == locked:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(self)

        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    rc, err = run_cli(capsys, *profile_argv(model_dir, locked, tmp_path / "o.json"))
    assert_one_error(rc, err, "cannot read data file")
    assert "Permission denied" in err
    assert files(tmp_path) == ["locked.txt"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seq-len", "0"], "--seq-len must be at least 2"),
        (["--max-tokens", "8"], "--max-tokens 8 is smaller than one window (--seq-len 16)"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
    ],
    ids=["seq-len-0", "max-tokens-below-window", "batch-size-0"],
)
def test_bad_numbers(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, flags: list[str], message: str
) -> None:
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, tmp_path / "o.json"), *flags)
    assert_one_error(rc, err, message)
    assert files(tmp_path) == []


# -- numerics ------------------------------------------------------------------------------


def test_inf_activations_name_the_block(capsys: Any, tmp_path: Path, text: Path) -> None:
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[2].mlp.down_proj.weight.fill_(float("inf"))
    d = save_tiny(tmp_path / "inf", model=model)
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    assert_one_error(rc, err, "NaN or inf activations at the output of block 2")
    assert "--dtype float32" in err
    assert files(tmp_path) == ["inf"]


# -- outputs -------------------------------------------------------------------------------


def test_existing_output_untouched(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path
) -> None:
    out = tmp_path / "o.json"
    out.write_text("precious")
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, out))
    assert_one_error(rc, err, f"output {out} already exists; pass --overwrite")
    assert out.read_text() == "precious"
    assert files(tmp_path) == ["o.json"]


def test_output_folder_missing(capsys: Any, tmp_path: Path, model_dir: Path, text: Path) -> None:
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, tmp_path / "no" / "o.json"))
    assert_one_error(rc, err, "the folder for output")
    assert files(tmp_path) == []


def _enospc(*_a: Any, **_k: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_writing_profile(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import depthlens.io

    monkeypatch.setattr(depthlens.io.os, "fsync", _enospc)  # the write "fails" at fsync
    out = tmp_path / "o.json"
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, out))
    assert_one_error(rc, err, f"disk full while writing {out}")
    assert files(tmp_path) == []  # no partial file, no temporary


def test_disk_full_saving_pruned_model(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    def save_half(self: Any, folder: Any, **_k: Any) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"half a checkpoint")
        _enospc()

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_half)
    out = tmp_path / "pruned"
    rc, err = run_cli(capsys, *prune_argv(model_dir, text, out))
    assert_one_error(rc, err, f"disk full while writing {out}")
    assert files(tmp_path) == []  # neither the output nor its temporary directory


# -- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_of_another_run(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path
) -> None:
    from depthlens.metrics.residual import ResidualSums
    from depthlens.profiling.checkpoint import Checkpointer

    out = tmp_path / "o.json"
    ckpt = tmp_path / "o.json.ckpt"
    Checkpointer(ckpt, 1, "another-run").maybe_save(ResidualSums.zeros(1, 1), 1)
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, out, "--checkpoint-every", "1"))
    assert_one_error(rc, err, f"checkpoint {ckpt} belongs to a different run")
    assert files(tmp_path) == ["o.json.ckpt"]  # kept: the user decides


def test_checkpoint_corrupted(capsys: Any, tmp_path: Path, model_dir: Path, text: Path) -> None:
    ckpt = tmp_path / "o.json.ckpt"
    ckpt.write_bytes(b"\x00garbage")
    rc, err = run_cli(
        capsys, *profile_argv(model_dir, text, tmp_path / "o.json", "--checkpoint-every", "1")
    )
    assert_one_error(rc, err, f"checkpoint {ckpt} is unreadable")
    assert files(tmp_path) == ["o.json.ckpt"]


# -- profiles given to other commands ------------------------------------------------------


def test_report_malformed_json(capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"kind": "depthlens.profile", "metrics": [1, 2,')
    rc, err = run_cli(capsys, "report", str(bad), "-o", str(tmp_path / "r.html"), "--quiet")
    assert_one_error(rc, err, f"{bad} is not valid JSON")
    assert files(tmp_path) == ["p.json"]


def test_report_not_a_profile(capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{"hello": "world"}')
    rc, err = run_cli(capsys, "report", str(bad), "-o", str(tmp_path / "r.html"), "--quiet")
    assert_one_error(rc, err, "not a depthlens profile JSON")
    assert files(tmp_path) == ["p.json"]


def test_profile_of_another_model(tmp_path: Path) -> None:
    from depthlens.cut import CutOptions, plan_cut

    opts = ProfileOptions(batch_size=2, lens_kernel="eager", n_max=2)
    prof = profile(wrap_tiny("llama"), random_windows(n=2), opts, progress=False)
    prof.save(tmp_path / "p.json")
    other = wrap_tiny("gemma3")  # 6 blocks, another family
    with pytest.raises(DepthlensError, match="the profile is of another model"):
        check_profile_matches(Profile.load(tmp_path / "p.json"), other)
    with pytest.raises(DepthlensError, match=r"num_layers 4 vs 6"):
        plan_cut(other, random_windows(n=2), "angular", CutOptions(n=1), profile=prof)
    check_profile_matches(prof, wrap_tiny("llama"))  # its own model passes


# -- signals -------------------------------------------------------------------------------


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(cmd: list[str], marker: str) -> tuple[int, str]:
    """Start ``cmd``, send SIGINT once ``marker`` appears on stderr; (rc, stderr).

    The child gets SIGINT's default disposition back: a shell without job control starts
    background commands (``pytest … &``) with SIGINT ignored, children inherit that, and
    Python then installs no KeyboardInterrupt handler, so the SIGINT would do nothing.
    """
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGINT)
            break
    else:
        proc.wait(timeout=60)
        pytest.fail(f"never saw {marker!r}: {''.join(seen)}")
    try:  # a run that swallows the interrupt must fail the test, not hang it
        _, rest = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, rest = proc.communicate()
        pytest.fail(f"still running 120 s after SIGINT: {''.join(seen)}{rest}")
    return proc.returncode, "".join(seen) + rest


class _CtrlCAfter:
    """A global module forward hook that raises KeyboardInterrupt (Ctrl-C) at call ``n``.

    In-process stand-in for a SIGINT arriving mid-computation: Python turns SIGINT into
    KeyboardInterrupt at the next bytecode boundary, which this raises from inside a forward.
    """

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, *_a: Any) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt

    def __enter__(self) -> _CtrlCAfter:
        from torch.nn.modules.module import register_module_forward_pre_hook

        self.handle = register_module_forward_pre_hook(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


def _long_argv(command: str, model: Path, data: Path, out: Path, n_windows: int) -> list[str]:
    """``profile`` (a window a batch) or ``prune`` (replaceme-cos) long enough to interrupt."""
    if command == "profile":
        argv = profile_argv(model, data, out, "--batch-size", "1")
    else:
        argv = small_argv(
            "prune", model, data, "--method", "replaceme-cos", "--remove", "1", "-o", str(out)
        )
    argv[argv.index("--max-tokens") + 1] = str(16 * n_windows)
    return argv


@pytest.mark.parametrize("command", ["profile", "prune"])
def test_ctrl_c_mid_run_exits_130_nothing_partial(
    capsys: Any, tmp_path: Path, model_dir: Path, command: str
) -> None:
    """In-process twin of the two SIGINT tests below (which need a real process)."""
    data = write_text(tmp_path / "t.txt", 16 * 40)
    out = tmp_path / ("o.json" if command == "profile" else "pruned")
    argv = _long_argv(command, model_dir, data, out, 40)
    with _CtrlCAfter(200) as ctrl_c:
        rc, err = run_cli(capsys, *argv)
    assert ctrl_c.calls == 200  # interrupted mid-computation, not before or after it
    assert_interrupted(rc, err)
    assert files(tmp_path) == ["t.txt"]


@pytest.mark.e2e  # a real process sent SIGINT
def test_sigint_during_profile(tmp_path: Path, model_dir: Path) -> None:
    data = write_text(tmp_path / "t.txt", 16 * 200)
    out = tmp_path / "o.json"
    cmd = [sys.executable, "-m", "depthlens", *_long_argv("profile", model_dir, data, out, 200)]
    rc, err = _interrupt_when(cmd, "profiling")
    assert_interrupted(rc, err)
    assert files(tmp_path) == ["t.txt"]


@pytest.mark.e2e  # a real process sent SIGINT
def test_sigint_during_prune(tmp_path: Path, model_dir: Path) -> None:
    data = write_text(tmp_path / "t.txt", 16 * 40)
    out = tmp_path / "pruned"
    cmd = [sys.executable, "-m", "depthlens", *_long_argv("prune", model_dir, data, out, 40)]
    cmd += ["--cos-epochs", "100000"]
    rc, err = _interrupt_when(cmd, "planning")
    assert_interrupted(rc, err)
    assert files(tmp_path) == ["t.txt"]


def test_sigterm_is_an_interrupt(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (e.g. a batch scheduler) ends a run like Ctrl-C: exit 130, nothing partial."""
    import depthlens.profiling

    def killed(*_a: Any, **_k: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to main's handler right here
        time.sleep(5)  # not reached: the handler raises KeyboardInterrupt
        pytest.fail("SIGTERM was not turned into KeyboardInterrupt")

    monkeypatch.setattr(depthlens.profiling, "profile", killed)
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc, err = run_cli(capsys, *profile_argv(model_dir, text, tmp_path / "o.json"))
    finally:
        signal.signal(signal.SIGTERM, old)
    assert_interrupted(rc, err)
    assert files(tmp_path) == []


def test_disk_full_writing_checkpoint(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import depthlens.profiling.checkpoint as ckpt_mod

    def save_half(_tensors: Any, filename: str, **_k: Any) -> None:
        Path(filename).write_bytes(b"half a checkpoint")
        _enospc()

    monkeypatch.setattr(ckpt_mod, "save_file", save_half)
    out = tmp_path / "o.json"
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, out, "--checkpoint-every", "1"))
    assert_one_error(rc, err, f"disk full while writing {out}.ckpt")
    assert files(tmp_path) == []  # no partial checkpoint, no temporary, no output
