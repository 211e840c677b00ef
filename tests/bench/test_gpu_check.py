"""bench/gpu_check.py: its comparisons can fail, it skips without CUDA, and it runs end to end."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from fixtures_saved import save_tiny

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def test_compare_passes_within_and_fails_outside_tolerance() -> None:
    ok = gc.compare("x", [1.0, [2.0, None]], [1.0005, [2.001, None]], 1e-3, 0.0)
    assert ok.ok and math.isclose(ok.max_abs, 1e-3, rel_tol=1e-6)
    assert not gc.compare("x", [1.0, 2.0], [1.0, 2.01], 1e-3, 1e-3).ok
    assert gc.compare("x", [100.0], [100.05], 0.0, 1e-3).ok  # relative part scales with |ref|
    assert not gc.compare("x", [1.0, None], [1.0, 0.0], 1.0, 1.0).ok  # missing vs present
    assert not gc.compare("x", [1.0], [1.0, 2.0], 1.0, 1.0).ok  # different lengths
    assert "FAIL" in gc.compare("x", [0.0], [1.0], 0.1, 0.0).line("cpu float32")


def _fake_run(shift: float = 0.0, removed: tuple[int, ...] = (3, 4)) -> dict[str, Any]:
    plan = SimpleNamespace(
        removed=removed,
        selection={"angular_distance_by_start": [0.2, 0.1]},
        fit={"rel_residual_ls_fit": 0.3, "rel_residual_ls_heldout": 0.4},
        transform=torch.eye(4),
    )
    run: dict[str, Any] = {k: [0.5, 0.25] for k in gc.TOLERANCES["float32"]}
    run.update(plan=plan, **{"think.tokens": [5, 6, 7]})
    run["skip.future"] = [[None, 0.5], [None, None]]
    run["eval.nll"] = 3.0 + shift
    return run


def test_check_all_flags_the_one_value_that_moved() -> None:
    checks = gc.check_all(_fake_run(), _fake_run(shift=0.1), "float32")
    failed = [c.name for c in checks if not c.ok]
    assert failed == ["eval.nll"]
    other_span = gc.check_all(_fake_run(), _fake_run(removed=(2, 3)), "float32")
    assert [c.name for c in other_span if not c.ok] == ["plan.removed"]


def test_without_cuda_it_skips_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the skip path does not apply")
    assert gc.main(["--device", "cuda"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("gpu_check: skipped:") and "CUDA" in out[0]


def test_runs_every_command_end_to_end_on_a_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_tiny(tmp_path / "m")
    rc = gc.main(
        [
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--model",
            str(model),
            "--tokens",
            "64",
            "--plan-tokens",
            "256",
            "--skip-tokens",
            "32",
            "--seq-len",
            "16",
            "--remove",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    names = {
        "profile.residual",
        "profile.angular",
        "profile.lens",
        "plan.selection",
        "plan.fit",
        "prune.nll",
        "eval.nll",
        "eval.mc",
        "skip.out_kl",
        "skip.future",
        "skip.delta_loss",
        "think.scores",
    }
    lines = [ln for ln in out.splitlines() if ln.startswith("cpu float32 ")]
    assert {ln.split()[2] for ln in lines} == names
    assert all(ln.rstrip().endswith("PASS") or "PASS  (" in ln for ln in lines)
