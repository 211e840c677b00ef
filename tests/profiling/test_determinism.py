"""The same command twice gives byte-identical JSON apart from the ``created`` timestamp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_saved import save_tiny, write_text

from depthlens.cli.main import main

CREATED = re.compile(rb'\n *"created": "[^"]*",?\n')


def _argv(model: Path, text: Path) -> list[str]:
    return [
        "profile",
        str(model),
        "--data",
        str(text),
        "--seq-len",
        "16",
        "--max-tokens",
        "160",
        "--lens-tokens",
        "100",
        "--batch-size",
        "3",
        "--lens-kernel",
        "eager",
        "--quiet",
    ]


def test_profile_twice_in_one_process_is_byte_identical(tmp_path: Path) -> None:
    """In-process twin of the test below (which also varies the hash seed and the process)."""
    model = save_tiny(tmp_path / "m")
    text = write_text(tmp_path / "t.txt", 1200)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main([*_argv(model, text), "-o", str(a)]) == 0
    assert main([*_argv(model, text), "-o", str(b)]) == 0
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    assert len(CREATED.findall(raw_a)) == 1
    assert CREATED.sub(b"\n", raw_a) == CREATED.sub(b"\n", raw_b)


@pytest.mark.e2e  # a second, fresh process
def test_profile_twice_is_byte_identical(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "m")
    text = write_text(tmp_path / "t.txt", 1200)
    argv = _argv(model, text)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    # one run in a fresh process (its own hash seed, thread pool, allocator) ...
    proc = subprocess.run(
        [sys.executable, "-m", "depthlens", *argv, "-o", str(a)],
        capture_output=True,
        timeout=300,
        env={"PYTHONHASHSEED": "123", **_env()},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main([*argv, "-o", str(b)]) == 0  # ... one in this one
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    assert len(CREATED.findall(raw_a)) == 1
    assert CREATED.sub(b"\n", raw_a) == CREATED.sub(b"\n", raw_b)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
