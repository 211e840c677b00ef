"""docs/ADDING.md's lens-metric example, executed: one record, seen in every output.

The record is registered for the test only; the profile JSON, the terminal table, the HTML
report and the lens-eval JSON must show it with no other code, and the profile's value
must equal a naive computation from the model's own hidden states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.metrics import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "ADDING.md"
NAME = "lens_final_prob"


def example(kind: str) -> str:
    """The code of the ```python example=KIND block of docs/ADDING.md."""
    found = re.findall(rf"```python example={kind}\n(.*?)```", DOC.read_text("utf-8"), re.S)
    assert len(found) == 1, f"docs/ADDING.md must hold one example={kind} block"
    return found[0]


@pytest.fixture
def lens_record() -> Iterator[Any]:
    """The example's record, registered for one test."""
    registry.all_metrics()  # every family first, so none registers into the scope
    with registry.METRICS.scoped():
        ns: dict[str, Any] = {}
        exec(example("lens_metric"), ns)  # noqa: S102 - our own documentation
        yield ns["LENS_FINAL_PROB"]
    assert NAME not in registry.METRICS


def _naive(lm: Any, data: Any) -> list[float]:
    """Mean over real tokens (first position out) of softmax(lens(h_l))[argmax lens(h_L)]."""
    from depthlens.metrics.lens import Lens

    lens = Lens.of(lm.model, lm.arch)
    with torch.no_grad():
        out = lm.model(
            input_ids=data.input_ids, attention_mask=data.attention_mask, output_hidden_states=True
        )
    valid = data.attention_mask.bool().clone()
    valid[:, 0] = False
    # HF's last hidden state is after the final norm; the block outputs before it are ours.
    n = lm.num_layers
    final = out.logits[valid].double()
    top1 = final.argmax(-1)
    vals = []
    for l in range(1, n + 1):
        h = out.hidden_states[l][valid] if l < n else None
        z = (lens.logits(h) if h is not None else out.logits[valid]).double()
        vals.append(float(torch.softmax(z, -1).gather(-1, top1[:, None]).mean()))
    return vals


@pytest.mark.usefixtures("no_pixels")
def test_the_lens_metric_example_is_everywhere(lens_record: Any, tmp_path: Path) -> None:
    from depthlens.cli.table import profile_table
    from depthlens.profiling import Profile, ProfileOptions, profile
    from depthlens.report.build import build_report
    from depthlens.tuned.evaluate import LensEval, evaluate_lens

    assert registry.get_metric(NAME) is lens_record
    lm, data = wrap_tiny("llama"), random_windows(n=4, seq_len=12, pad_last=3)
    opts = ProfileOptions(lens_tokens=None, lens_kernel="eager", batch_size=2)
    prof = profile(lm, data, opts, progress=False)
    assert prof.metrics[NAME] == pytest.approx(_naive(lm, data), rel=1e-4, abs=1e-6)
    # profile JSON
    prof.save(tmp_path / "profile.json")
    on_disk = json.loads((tmp_path / "profile.json").read_text())
    assert on_disk["metrics"][NAME] == pytest.approx(prof.metrics[NAME])
    assert Profile.load(tmp_path / "profile.json").metrics[NAME] == on_disk["metrics"][NAME]
    # table (table=True) and report (a figure from the record, and its definition)
    assert lens_record.short in profile_table(prof).splitlines()[1]
    html = build_report(prof)
    assert escape(lens_record.caption) in html and escape(lens_record.definition) in html
    assert f'id="plot-{NAME.replace("_", "-")}"' in html  # its own figure
    # lens eval: the same accumulator over the same tokens gives the same numbers
    ev = evaluate_lens(lm, data, "logit", batch_size=2, kernel="eager", progress=False)
    ev.save(tmp_path / "eval.json")
    back = LensEval.load(tmp_path / "eval.json")
    assert back.lenses["logit"][NAME] == pytest.approx(prof.metrics[NAME], rel=1e-6)
