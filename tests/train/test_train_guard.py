"""train and study check before work and leave no half-made folder (issue 20 cases 2, 7, 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from cli_run import assert_one_error
from train_helpers import tiny_args, write_text

from depthlens.cli.main import main
from depthlens.train.checkpoint import checkpoint_path


def _with(args: list[str], **over: str) -> list[str]:
    args = list(args)
    for k, v in over.items():
        args[args.index(k) + 1] = v
    return args


def test_train_refuses_eval_data_that_overlaps_data(tmp_path: Path, capsys: Any) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    rc = main(_with(tiny_args(text, out), **{"--eval-data": str(text)}))
    assert_one_error(rc, capsys.readouterr().err, "--data and --eval-data overlap")
    assert not out.exists()


def test_study_refuses_eval_data_that_overlaps_data(tmp_path: Path, capsys: Any) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "study"
    argv = ["study", "depth", "--depths", "1", "--schemes", "pre-ln", "--data", str(text)]
    rc = main([*argv, "--eval-data", str(text), "-o", str(out), "--quiet"])
    assert_one_error(rc, capsys.readouterr().err, "--data and --eval-data overlap")
    assert not out.exists()


def test_study_refuses_a_depth_twice(tmp_path: Path, capsys: Any) -> None:
    rc = main(["study", "depth", "--depths", "2,2", "-o", str(tmp_path / "s"), "--quiet"])
    assert_one_error(rc, capsys.readouterr().err, "names depth 2 more than once")


def test_refused_vocab_size_leaves_no_folder(tmp_path: Path, capsys: Any) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    rc = main(_with(tiny_args(text, out), **{"--vocab-size": "1"}))
    assert_one_error(rc, capsys.readouterr().err, "--vocab-size 1 is below")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
@pytest.mark.parametrize("cmd", ["train", "study"])
def test_cuda_without_cuda_is_refused_before_work(tmp_path: Path, capsys: Any, cmd: str) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    argv = _with(tiny_args(text, out), **{"--device": "cuda"})
    if cmd == "study":
        argv = ["study", "depth", "--depths", "1", "--schemes", "pre-ln", *argv[1:]]
        argv = [a for i, a in enumerate(argv) if argv[i - 1] != "--depth" and a != "--depth"]
    assert_one_error(main(argv), capsys.readouterr().err, "no CUDA GPU")
    assert not out.exists()


def test_unwritable_output_is_refused_before_work(tmp_path: Path, capsys: Any) -> None:
    text = write_text(tmp_path / "t.txt")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main(tiny_args(text, blocker / "run"))
    assert_one_error(rc, capsys.readouterr().err, "cannot write output")


def _interrupt_at_step(monkeypatch: Any, n: int) -> None:
    import depthlens.train.loop as loop

    real, calls = loop.step_loss, []

    def interrupted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "step_loss", interrupted)


def test_ctrl_c_before_a_checkpoint_leaves_no_folder(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    _interrupt_at_step(monkeypatch, 3)
    assert main(tiny_args(text, out)) == 130
    assert "nothing partial was written" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.undo()
    assert main(tiny_args(text, out)) == 0  # nothing blocks the rerun


def test_ctrl_c_after_a_checkpoint_keeps_it_and_says_so(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    _interrupt_at_step(monkeypatch, 5)
    args = tiny_args(text, out, 8, **{"--checkpoint-every": 2})
    assert_one_error(
        main(args), capsys.readouterr().err, "rerun the same command to resume", code=130
    )
    assert torch.load(checkpoint_path(out), weights_only=True)["step"] == 4
