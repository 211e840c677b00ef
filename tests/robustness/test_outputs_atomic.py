"""Outputs: checked before any work, never two "successful" writers, no leftovers, umask."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, prune_argv

import depthlens.io as dio
from depthlens.cli.main import main
from depthlens.errors import DepthlensError


@pytest.fixture
def umask() -> Iterator[Any]:
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


_WRITER = """
import sys, time, pathlib
from depthlens.io import check_output_path, atomic_write_json
from depthlens.errors import DepthlensError
out, go, name = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
check_output_path(out, overwrite=False)  # both runs check while the path is free
print("checked", flush=True)
while not go.exists():
    time.sleep(0.01)
try:
    atomic_write_json(out, {"run": name})
except DepthlensError as exc:
    print(exc)
    sys.exit(2)
"""


def test_a_file_that_appears_after_the_check_is_not_replaced(tmp_path: Path) -> None:
    """In-process twin of the two-process race below: another run writes in between."""
    out = tmp_path / "o.json"
    dio.check_output_path(out, overwrite=False)  # our run checks while the path is free
    out.write_text('{"run": "a"}')  # ... the other run finishes first
    with pytest.raises(DepthlensError, match=r"already exists \(another run wrote it"):
        dio.atomic_write_json(out, {"run": "b"})
    assert out.read_text() == '{"run": "a"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]  # no temporary


@pytest.mark.e2e  # two real processes race
def test_two_writers_without_overwrite_only_one_succeeds(tmp_path: Path) -> None:
    """Two processes pass the early check, then both write: exactly one may succeed."""
    import subprocess
    import sys

    out, go = tmp_path / "o.json", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(out), str(go), n], stdout=subprocess.PIPE, text=True
        )
        for n in ("a", "b")
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "checked"
    go.write_text("")
    results = [(p.wait(timeout=60), p.stdout.read() if p.stdout else "") for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(msg for rc, msg in results if rc == 2)
    assert "already exists (another run wrote it meanwhile)" in loser
    winner = "ab"[[rc for rc, _ in results].index(0)]
    assert f'"run": "{winner}"' in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "o.json"]  # no temporary


def test_overwrite_still_replaces(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    dio.check_output_path(out, overwrite=False)
    dio.atomic_write_json(out, {"run": 1})
    dio.check_output_path(out, overwrite=True)
    dio.atomic_write_json(out, {"run": 2})
    assert '"run": 2' in out.read_text()


def test_two_writers_of_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    dio.check_output_path(out, overwrite=False)
    with dio.atomic_dir(out) as tmp:
        (tmp / "a").write_text("first")
    with pytest.raises(DepthlensError, match="already exists"), dio.atomic_dir(out) as tmp:
        (tmp / "a").write_text("second")
    assert (out / "a").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def test_prune_concurrent_writer_cli(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run finishes the same folder while this one works: this one must not win."""
    from transformers import PreTrainedModel

    out = tmp_path / "pruned"
    real = PreTrainedModel.save_pretrained

    def other_run_first(self: Any, folder: Any, **k: Any) -> None:
        out.mkdir()
        (out / "model.safetensors").write_text("the other run's checkpoint")
        real(self, folder, **k)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", other_run_first)
    capsys.readouterr()
    rc = main(prune_argv(model_dir, text, out))
    assert_one_error(rc, capsys.readouterr().err, f"output {out} already exists")
    assert (out / "model.safetensors").read_text() == "the other run's checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def test_prune_overwrite_onto_a_file_leaves_nothing_hidden(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path
) -> None:
    out = tmp_path / "pruned"
    out.write_text("an old file in the way")
    capsys.readouterr()
    assert main(prune_argv(model_dir, text, out, "--overwrite")) == 0, capsys.readouterr().err
    assert (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]  # no .pruned.old-PID


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, umask: Any, mask: int
) -> None:
    umask(mask)
    out = tmp_path / "pruned"
    plan = tmp_path / "plan.json"
    capsys.readouterr()
    assert main(prune_argv(model_dir, text, out)) == 0, capsys.readouterr().err
    argv = prune_argv(model_dir, text, plan)
    argv[0] = "plan"
    assert main(argv) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE(plan.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o666 & ~mask


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """A read-only location: real for ordinary users, simulated for root (root writes anywhere)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = tempfile.mkstemp

    def mkstemp(*a: Any, dir: Any = None, **k: Any) -> Any:  # noqa: A002
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(dio.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("command", ["profile", "prune", "plan"])
def test_unwritable_output_fails_before_loading(
    capsys: Any,
    tmp_path: Path,
    model_dir: Path,
    text: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_load: None,
    command: str,
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    out = ro / ("o.json" if command != "prune" else "pruned")
    argv = prune_argv(model_dir, text, out)
    argv[0] = command
    if command == "profile":
        argv = [a for a in argv if a not in ("--method", "last", "--remove", "1")]
    try:
        capsys.readouterr()
        rc = main(argv)
    finally:
        ro.chmod(0o755)
    assert_one_error(rc, capsys.readouterr().err, f"cannot write output {out}")
    assert list(ro.iterdir()) == []


def test_output_parent_is_a_file(capsys: Any, tmp_path: Path, model_dir: Path, text: Path) -> None:
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "o.json"
    capsys.readouterr()
    rc = main(
        [
            "plan",
            str(model_dir),
            "--data",
            str(text),
            "--seq-len",
            "16",
            "--remove",
            "1",
            "--max-tokens",
            "64",
            "--method",
            "last",
            "-o",
            str(out),
        ]
    )
    assert_one_error(rc, capsys.readouterr().err, "is a file")
