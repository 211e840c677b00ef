"""bench/gpu_cut_smoke.py: it passes when the two devices agree and fails when they do not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_cut_smoke.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_cut_smoke", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_cut_smoke"] = mod
    spec.loader.exec_module(mod)
    return mod


smoke = _load()


def test_cpu_against_cpu_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(["--device", "cpu", "--methods", "replaceme-ls,greedy-ls"]) == 0
    out = capsys.readouterr().out
    assert "replaceme-ls     PASS" in out and "greedy-ls        PASS" in out
    assert "ALL PASS" in out


def test_a_device_that_disagrees_or_crashes_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = smoke._cut

    def fake(base: Any, device: str, method: str, w: Any) -> Any:
        removed, logits = real(base, "cpu", method, w)
        if device == "cpu":
            return removed, logits
        if method == "last":
            raise RuntimeError("Expected all tensors to be on the same device")
        return removed, logits * 1.01  # 1% off: over the 1e-3 bound

    monkeypatch.setattr(smoke, "_cut", fake)
    assert smoke.main(["--device", "other", "--methods", "replaceme-ls,last"]) == 1
    out = capsys.readouterr().out
    assert "replaceme-ls     FAIL" in out
    assert "last             ERROR RuntimeError" in out
    assert "SOME FAILED" in out
