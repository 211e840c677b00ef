"""A ``depthlens profile`` run that checkpoints after every window, for the kill/resume tests.

``CheckpointedProfile.make(tmp_path, n_windows)`` saves a tiny model and a text of
``n_windows`` windows of 16 tokens in ``tmp_path``; ``argv`` is the command that profiles
them one window a batch, saving a checkpoint after each batch, so a kill lands mid-run.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures_saved import save_tiny, write_text

from depthlens.cli.main import main

SEQ_LEN = 16


@dataclass(frozen=True)
class CheckpointedProfile:
    """The saved inputs and the output/checkpoint paths of one resumable profile run."""

    folder: Path
    model: Path
    text: Path
    out: Path
    ckpt: Path
    n_windows: int

    @classmethod
    def make(cls, folder: Path, n_windows: int) -> CheckpointedProfile:
        model = save_tiny(folder / "m")
        # 50 words more than the run reads, so the last window is never short.
        text = write_text(folder / "t.txt", SEQ_LEN * n_windows + 50)
        out = folder / "out.json"
        return cls(folder, model, text, out, folder / "out.json.ckpt", n_windows)

    def argv(self, *extra: str, out: Path | None = None) -> list[str]:
        """``profile`` one window a batch with a checkpoint after each; ``extra`` before -o."""
        return [
            "profile",
            str(self.model),
            "--data",
            str(self.text),
            "--seq-len",
            str(SEQ_LEN),
            "--max-tokens",
            str(SEQ_LEN * self.n_windows),
            "--batch-size",
            "1",
            "--lens-kernel",
            "eager",
            "--checkpoint-every",
            "1",
            *extra,
            "--quiet",
            "-o",
            str(self.out if out is None else out),
        ]

    def assert_equals_uninterrupted(self, *extra: str) -> None:
        """The output equals an uninterrupted run's (in-process), and nothing else is left."""
        ref = self.folder / "ref.json"
        assert main(self.argv(*extra, out=ref)) == 0
        got, want = json.loads(self.out.read_text()), json.loads(ref.read_text())
        assert without_created(got) == without_created(want)
        left = sorted(p.name for p in self.folder.iterdir())
        assert left == ["m", "out.json", "ref.json", "t.txt"]  # checkpoints, temporaries gone


def without_created(x: Any) -> Any:
    """``x`` without its ``created`` timestamps, at any depth."""
    if isinstance(x, dict):
        return {k: without_created(v) for k, v in x.items() if k != "created"}
    if isinstance(x, list):
        return [without_created(v) for v in x]
    return x


def wait_for_checkpoint(path: Path, proc: subprocess.Popen[Any], timeout: float = 120.0) -> None:
    """Wait until the run in ``proc`` has saved ``path`` (so it is inside its batch loop)."""
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before its first checkpoint")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.002)
