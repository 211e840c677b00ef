"""The worked examples of docs/ADDING.md, executed: each is one declaration plus this test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.capture.hooks import capture_blocks
from depthlens.metrics import registry
from depthlens.profiling import ProfileOptions, profile

DOC = Path(__file__).resolve().parents[2] / "docs" / "ADDING.md"


def example(kind: str) -> str:
    """The code of the ```python example=KIND block of docs/ADDING.md."""
    found = re.findall(rf"```python example={kind}\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert len(found) == 1, f"docs/ADDING.md must hold one example={kind} block"
    return found[0]


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Records registered by a test disappear after it."""
    registry.all_metrics()  # import every family first, so none registers into the scope
    with registry.METRICS.scoped():
        yield


def test_the_metric_example_is_profiled(scratch_registry: None) -> None:
    ns: dict[str, Any] = {}
    exec(example("metric"), ns)  # noqa: S102 - our own documentation
    assert registry.get_metric("orthogonal_share") is ns["ORTHOGONAL_SHARE"]
    lm, data = wrap_tiny("llama"), random_windows(n=4, seq_len=12, pad_last=3)
    prof = profile(lm, data, ProfileOptions(lens=False), progress=False)
    got = prof.metrics["orthogonal_share"]
    # Naive: the same quantity from a plain forward with hooks, token by token, float64.
    valid = data.attention_mask.bool().clone()
    valid[:, 0] = False  # the first position is excluded by default
    with capture_blocks(lm.model, lm.arch) as trace, torch.no_grad():
        lm.model(input_ids=data.input_ids, attention_mask=data.attention_mask)
    for l in range(lm.num_layers):
        h = trace.states[l][valid].double()
        d = trace.states[l + 1][valid].double() - h
        vals = [1 - float(torch.dot(x, y) / (x.norm() * y.norm())) ** 2 for x, y in zip(d, h)]
        assert got[l] == pytest.approx(sum(vals) / len(vals), rel=1e-5, abs=1e-7), l
    from depthlens.cli.table import profile_table

    assert "orth" in profile_table(prof)


def test_the_architecture_example_is_the_tables_entry() -> None:
    from tiny_models import tiny_model

    from depthlens.arch.spec import FAMILIES, resolve_arch

    ns: dict[str, Any] = {}
    exec(example("arch"), ns)  # noqa: S102
    spec = ns["STARCODER2"]
    assert FAMILIES["starcoder2"] == spec
    resolved = resolve_arch(tiny_model("starcoder2"))
    assert resolved.family == "starcoder2" and resolved.mlp_out_proj == "mlp.c_proj"


def test_the_cut_method_example_plans_applies_and_matches_skipping() -> None:
    from depthlens.cut import CUT_METHODS

    with CUT_METHODS.scoped():  # the example's record is gone after the test
        ns: dict[str, Any] = {}
        exec(example("cut"), ns)  # noqa: S102
        assert CUT_METHODS["middle-stride"] is ns["MIDDLE_STRIDE"]
        _plan_apply_middle_stride()
    assert "middle-stride" not in CUT_METHODS


def _plan_apply_middle_stride() -> None:
    from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut, skip_blocks

    lm, data = wrap_tiny("gemma3"), random_windows(n=2, seq_len=12)  # 6 blocks: middle = 2, 3
    plan = plan_cut(
        lm, data, "middle-stride", CutOptions(n=1, calibration=CalibrationOptions(batch_size=2))
    )
    assert plan.removed == (2,) and plan.selection["rule"].startswith("every other")
    ids, mask = data.input_ids, data.attention_mask
    with skip_blocks(lm.model, lm.arch, plan.removed), torch.no_grad():
        want = lm.model(input_ids=ids, attention_mask=mask).logits
    apply_cut_(lm, plan)
    assert lm.num_layers == 5
    with torch.no_grad():
        got = lm.model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
