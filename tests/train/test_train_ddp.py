"""The same global batch and seed give the same loss curve on 1 and 2 processes (gloo).

Tolerance: 1e-4 relative per step. Only float32 summation order differs (DDP averages two
half-batch gradients; one process averages all rows at once): measured 9.6e-8 at most over
these 8 steps (the first two identical), so the tolerance leaves a wide margin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_args, write_text

from depthlens.cli.main import main

REL = 1e-4


# torchrun starts 2 real processes. No in-process twin: what is tested is torch DDP's
# gradient all-reduce between processes (the rank::world sharding of windows has one in
# tests/dist/test_ranks_in_process.py).
@pytest.mark.e2e
def test_two_processes_follow_one_process_loss_curve(tmp_path: Path) -> None:
    text = write_text(tmp_path / "t.txt")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(tiny_args(text, one)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "depthlens",
        *tiny_args(text, two),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = json.loads((one / "train.json").read_text())
    b = json.loads((two / "train.json").read_text())
    assert len(a["losses"]) == len(b["losses"]) == 8
    la, lb = torch.tensor(a["losses"]), torch.tensor(b["losses"])
    assert la[-1] < la[0]  # it trains
    torch.testing.assert_close(lb, la, rtol=REL, atol=0.0)
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=REL)
