"""eval splits a batch whose logits cannot fit and refuses one window that cannot (issue 20.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures_saved import save_tiny, write_text

import depthlens.evaluate.batch_memory as bm
from depthlens.cli.main import main
from depthlens.evaluate.batch_memory import BYTES_PER_LOGIT, fit_batch


def test_fit_batch_caps_splits_and_refuses() -> None:
    per = 16 * 128 * BYTES_PER_LOGIT  # one window's logits
    assert fit_batch(4, 10, 16, 128, None) == (4, None)
    assert fit_batch(100, 10, 16, 128, None) == (10, None)  # capped to the windows
    b, note = fit_batch(8, 10, 16, 128, free=2 * 3 * per)  # half the free memory: 3 windows
    assert b == 3 and note is not None and "evaluating 3 windows at a time" in note
    with pytest.raises(Exception, match=r"one window of --seq-len 16 needs ~0\.0 GiB"):
        fit_batch(1, 10, 16, 128, free=per)


@pytest.fixture()
def eval_argv(tmp_path: Path) -> list[str]:
    model, text = save_tiny(tmp_path / "m"), write_text(tmp_path / "t.txt", 400)
    return ["eval", str(model), "--data", str(text), "--seq-len", "16", "--max-tokens", "160"]


def test_eval_huge_batch_is_split_with_the_estimate(
    eval_argv: list[str], capsys: Any, monkeypatch: Any
) -> None:
    per = 16 * 128 * BYTES_PER_LOGIT
    monkeypatch.setattr(bm, "free_memory", lambda _dev: 2 * 2 * per)
    capsys.readouterr()
    assert main([*eval_argv, "--batch-size", "100000", "--no-speed", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "would need ~" in err and "GiB of logits" in err and "2 windows at a time" in err


def test_eval_window_that_cannot_fit_is_refused(
    eval_argv: list[str], capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(bm, "free_memory", lambda _dev: 1000)
    capsys.readouterr()
    assert main([*eval_argv, "--no-speed", "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("depthlens:")]
    assert len(err) == 1 and "GiB of logits" in err[0] and "lower --seq-len" in err[0]
