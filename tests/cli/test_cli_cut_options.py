"""plan/prune/profile/think: out-of-range options are one line, before the model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, run_cli, small_argv
from fixtures_saved import write_text
from tiny_models import N_LAYERS

from depthlens.cli.main import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--remove", "1", "--ridge", "-0.1"], "--ridge must be ≥ 0.0, got -0.1"),
        (["--remove", "1", "--holdout-every", "-1"], "--holdout-every must be ≥ 0, got -1"),
        (["--remove", "1", "--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
        (["--remove", "1", "--cos-lr", "0"], "--cos-lr must be > 0, got 0.0"),
        (["--remove", "1", "--greedy-windows", "0"], "--greedy-windows must be ≥ 1, got 0"),
        (
            ["--remove", "1", "--method", "replacme-ls"],
            "unknown --method 'replacme-ls'; did you mean 'replaceme-ls'?",
        ),
        (["--remove", "1", "--seq-len", "1"], "--seq-len must be at least 2"),
        (["--remove", "1", "--data", "/no/such.txt"], "data file not found"),
        (["--ratio", "1.5"], "--ratio must be strictly between 0 and 1"),
    ],
    ids=[
        "ridge-neg",
        "holdout-neg",
        "batch-0",
        "cos-lr-0",
        "greedy-0",
        "method-typo",
        "seq-len-1",
        "data-missing",
        "ratio-above-1",
    ],
)
@pytest.mark.parametrize("command", ["plan", "prune"])
def test_cut_options_before_loading(
    capsys: Any,
    tmp_path: Path,
    model_dir: Path,
    text: Path,
    no_load: None,
    command: str,
    extra: list[str],
    message: str,
) -> None:
    out = ["-o", str(tmp_path / "out")]
    rc, err = run_cli(capsys, *small_argv(command, model_dir, text, *extra, *out))
    assert_one_error(rc, err, message)
    assert list(tmp_path.iterdir()) == []


def test_prune_onto_the_model_itself(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, no_load: None
) -> None:
    rc, err = run_cli(
        capsys,
        *small_argv("prune", model_dir, text, "--remove", "1", "--overwrite", "-o", str(model_dir)),
    )
    assert_one_error(rc, err, "is the model being cut")
    assert (model_dir / "config.json").is_file()


def test_ratio_rounding_to_zero_blocks(capsys: Any, model_dir: Path, text: Path) -> None:
    rc, err = run_cli(
        capsys, *small_argv("plan", model_dir, text, "--ratio", "0.1", "--method", "last")
    )
    assert_one_error(rc, err, f"--ratio 0.1 of {N_LAYERS} blocks is 0.40 blocks, which rounds to 0")


def test_ratio_that_rounds_to_a_count_is_used(capsys: Any, model_dir: Path, text: Path) -> None:
    capsys.readouterr()
    rc = main(small_argv("plan", model_dir, text, "--ratio", "0.3", "--method", "last"))
    out = capsys.readouterr()
    assert rc == 0, out.err  # 0.3 × 4 = 1.2 -> 1 block
    assert f"removes 1 of {N_LAYERS} blocks" in out.out


def test_holdout_every_zero_says_there_is_no_heldout_fit(
    capsys: Any, model_dir: Path, tmp_path: Path
) -> None:
    data = write_text(tmp_path / "long.txt", 16 * 60)
    capsys.readouterr()
    rc = main(
        small_argv(
            "plan",
            model_dir,
            data,
            "--remove",
            "1",
            "--holdout-every",
            "0",
            "--max-tokens",
            str(16 * 40),
        )
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "fit quality: not measured (no held-back windows: --holdout-every 0" in out.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checkpoint-every", "0", "-o", "OUT"], "--checkpoint-every must be ≥ 1 batch, got 0"),
        (["--checkpoint-every", "2"], "--checkpoint-every needs -o"),
    ],
    ids=["zero", "without-output"],
)
def test_profile_checkpoint_options(
    capsys: Any,
    tmp_path: Path,
    model_dir: Path,
    text: Path,
    no_load: None,
    extra: list[str],
    message: str,
) -> None:
    extra = [str(tmp_path / "o.json") if e == "OUT" else e for e in extra]
    rc, err = run_cli(capsys, *small_argv("profile", model_dir, text, *extra))
    assert_one_error(rc, err, message)
    assert list(tmp_path.iterdir()) == []


def test_think_late_blocks_above_depth(capsys: Any, model_dir: Path) -> None:
    rc, err = run_cli(
        capsys,
        "think",
        str(model_dir),
        "w5 w6 w7",
        "--late-blocks",
        str(N_LAYERS + 2),
        "--max-new-tokens",
        "2",
    )
    assert_one_error(rc, err, f"--late-blocks {N_LAYERS + 2} is more than the model's {N_LAYERS}")
