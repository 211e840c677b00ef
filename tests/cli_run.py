"""Run the real CLI entry point in-process and check its one-line errors.

What the robustness and option-checking tests share: ``run_cli`` calls ``main(argv)``
(what ``depthlens ...`` runs) and returns the exit code with stderr; ``assert_one_error``
checks the contract of docs/ROBUSTNESS.md for a failed run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from depthlens.cli.main import main

PREFIX = "depthlens: error: "


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``depthlens *argv`` in-process; return (exit code, stderr of this run only)."""
    capsys.readouterr()
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def assert_one_error(rc: int, err: str, message: str, code: int = 2) -> str:
    """Exit ``code`` and exactly one ``depthlens:`` line (after any progress) with ``message``.

    Returns that line, for tests that check more of it.
    """
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.startswith("depthlens:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX) and message in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def assert_interrupted(rc: int, err: str) -> None:
    """Exit 130 (Ctrl-C, SIGTERM), ending with the line that nothing partial was written."""
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "depthlens: interrupted; nothing partial was written"
    assert "Traceback" not in err


def small_argv(command: str, model: Path | str, data: Path | str, *extra: str) -> list[str]:
    """``depthlens command model`` on 4 windows of 16 tokens of ``data``, quietly."""
    return [
        command,
        str(model),
        "--data",
        str(data),
        "--seq-len",
        "16",
        "--max-tokens",
        "64",
        "--quiet",
        *extra,
    ]


def profile_argv(model: Path | str, data: Path | str, out: Path, *extra: str) -> list[str]:
    """A small ``profile`` (eager lens, so no compile time) writing ``out``."""
    return small_argv("profile", model, data, "--lens-kernel", "eager", "-o", str(out), *extra)


def prune_argv(model: Path | str, data: Path | str, out: Path, *extra: str) -> list[str]:
    """A small ``prune`` of the last block, writing the checkpoint to ``out``."""
    return small_argv(
        "prune", model, data, "--method", "last", "--remove", "1", "-o", str(out), *extra
    )
