"""Options are checked before the model is loaded; what needs the model right after loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, run_cli, small_argv
from tiny_models import MAX_POS, N_LAYERS

from depthlens.cli.main import main


def small(command: str, model: Path | str, text: Path | str, *extra: str) -> list[str]:
    """A small run of ``command`` (eval, think, ...): one round of 2 decoded tokens, no warmup."""
    return small_argv(
        command,
        model,
        text,
        "--prompt-len",
        "8",
        "--decode-tokens",
        "2",
        "--rounds",
        "1",
        "--warmup",
        "0",
        *extra,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "/no/such/file.txt"], "data file not found"),
        (["--seq-len", "0"], "--seq-len must be at least 2"),
        (["--max-tokens", "8"], "--max-tokens 8 is smaller than one window"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
        (["--rounds", "0"], "--rounds must be ≥ 1, got 0"),
        (["--warmup", "-1"], "--warmup must be ≥ 0, got -1"),
        (["--prompt-len", "0"], "--prompt-len must be ≥ 1, got 0"),
        (["--threads", "0"], "--threads must be ≥ 1, got 0"),
        (["--data", "wiki-evl"], "unknown data 'wiki-evl'; did you mean 'wiki-eval'?"),
    ],
    ids=[
        "data-missing",
        "seq-len-0",
        "max-tokens",
        "batch-0",
        "rounds-0",
        "warmup-neg",
        "prompt-0",
        "threads-0",
        "data-typo",
    ],
)
@pytest.mark.parametrize("command", ["eval", "compare"])
def test_eval_compare_check_before_loading(
    capsys: Any,
    model_dir: Path,
    text: Path,
    no_load: None,
    command: str,
    extra: list[str],
    message: str,
) -> None:
    rc, err = run_cli(capsys, *small(command, model_dir, text, *extra))
    assert_one_error(rc, err, message)


def test_mc_without_bigbench_fails_before_loading(
    capsys: Any, model_dir: Path, text: Path, no_load: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import depthlens.evaluate.mc as mc

    monkeypatch.setattr(mc, "bigbench_root", lambda: None)
    rc, err = run_cli(capsys, *small("eval", model_dir, text, "--mc"))
    assert_one_error(rc, err, "BIG-bench tasks are not installed")


def test_mc_unknown_task_fails_before_loading(
    capsys: Any,
    tmp_path: Path,
    model_dir: Path,
    text: Path,
    no_load: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import depthlens.evaluate.mc as mc

    monkeypatch.setattr(mc, "bigbench_root", lambda: tmp_path)
    rc, err = run_cli(capsys, *small("eval", model_dir, text, "--mc", "no_such_task"))
    assert_one_error(rc, err, "no BIG-bench task 'no_such_task'")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--seq-len", str(MAX_POS + 1), "--max-tokens", "400"],
            f"--seq-len {MAX_POS + 1} is longer than",
        ),
        (["--prompt-len", str(MAX_POS)], "--prompt-len + --decode-tokens"),
    ],
    ids=["seq-len", "prompt-len"],
)
def test_lengths_above_the_context(
    capsys: Any, model_dir: Path, text: Path, extra: list[str], message: str
) -> None:
    rc, err = run_cli(capsys, *small("eval", model_dir, text, *extra))
    assert_one_error(rc, err, message)
    assert f"context of {MAX_POS} tokens" in err


def test_profile_seq_len_above_context_and_n_max_above_depth(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path
) -> None:
    base = [
        "profile",
        str(model_dir),
        "--data",
        str(text),
        "--max-tokens",
        "400",
        "--quiet",
        "--lens-kernel",
        "eager",
    ]
    rc, err = run_cli(capsys, *base, "--seq-len", str(MAX_POS * 2))
    assert_one_error(rc, err, f"--seq-len {MAX_POS * 2} is longer than")
    rc, err = run_cli(capsys, *base, "--seq-len", "16", "--n-max", str(N_LAYERS + 1))
    assert_one_error(rc, err, f"--n-max {N_LAYERS + 1} is more than the model's {N_LAYERS} blocks")


def test_dtype_lists_its_choices(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "smollm2-135m", "--dtype", "float8"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'float8'" in err and "bfloat16" in err and "float16" in err


def test_model_name_typo_did_you_mean(capsys: Any, text: Path) -> None:
    rc, err = run_cli(capsys, *small_argv("profile", "smollm2-13m", text))
    assert_one_error(rc, err, "unknown model 'smollm2-13m'; did you mean 'smollm2-135m'?")
