"""`depthlens compare` on the real default model: every timed run in the JSON, the verdict shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from depthlens.cli.main import main


@pytest.mark.e2e
def test_compare_real_model_records_runs_and_verdict(capsys: Any, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    argv = [
        "compare",
        "smollm2-135m",
        "smollm2-135m",
        "--data",
        "wiki-eval",
        "--seq-len",
        "128",
        "--max-tokens",
        "256",
        "--prompt-len",
        "16",
        "--decode-tokens",
        "2",
        "--rounds",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--quiet",
        "-o",
        str(out),
    ]
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    res = json.loads(out.read_text())
    runs = res["speed"]["models"]
    assert [len(m["prefill_s"]) for m in runs] == [3, 3] and res["speed"]["options"]["threads"] == 1
    row = res["models"][1]
    assert row["ideal_speedup"] == pytest.approx(1.0)  # the same model twice
    assert row["prefill_verdict"] in (
        "no measurable difference",
        "speed-up",
        "slow-down",
        "above ideal: suspicious",
    )
    lo, hi = row["prefill_ci95"]
    assert f"[{lo:.2f}, {hi:.2f}] {row['prefill_verdict']}" in cap.out
