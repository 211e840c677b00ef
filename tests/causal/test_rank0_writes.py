"""Under torchrun only rank 0 writes the ``skip`` / ``think`` output (the others return 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed
from fixtures_saved import save_tiny, write_text

import depthlens.dist
from depthlens.cli.main import main


def _skip_args(model: Path, text: Path, out: Path) -> list[str]:
    return [
        "skip",
        str(model),
        "--data",
        str(text),
        "--seq-len",
        "12",
        "--max-tokens",
        "24",
        "--sublayers",
        "none",
        "--skip-lens-kernel",
        "eager",
        "--quiet",
        "-o",
        str(out),
    ]


def _think_args(model: Path, out: Path) -> list[str]:
    return ["think", str(model), "w5 w6 w7 w8", "--max-new-tokens", "2", "-o", str(out)]


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    model = save_tiny(tmp_path / "m")
    text = write_text(tmp_path / "t.txt", 200)
    # Pretend to be one of 2 ranks at the torch.distributed level (modules bind rank_world
    # by name at import, so patching depthlens.dist would leak into later tests).
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: rank)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    assert depthlens.dist.rank_world() == (rank, 2)
    skip_out, think_out = tmp_path / "skip.json", tmp_path / "think.json"
    assert main(_skip_args(model, text, skip_out)) == 0
    assert main(_think_args(model, think_out)) == 0
    assert skip_out.exists() == (rank == 0)
    assert think_out.exists() == (rank == 0)
