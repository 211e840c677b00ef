"""A perplexity that overflows (exp(nll) > float max) is written as strict JSON (null)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from fixtures_saved import save_tiny, write_text
from tiny_models import tiny_model

from depthlens.cli.main import main


def _strict_load(text: str) -> object:
    def refuse(const: str) -> object:
        raise AssertionError(f"non-standard JSON constant {const} in the output")

    return json.loads(text, parse_constant=refuse)


def test_eval_with_infinite_ppl_writes_strict_json(tmp_path: Path) -> None:
    m = tiny_model("llama")
    with torch.no_grad():
        m.lm_head.weight.mul_(1e5)  # logits ~1e5: mean NLL far above 700 nats, exp overflows
    model = save_tiny(tmp_path / "m", model=m)
    text = write_text(tmp_path / "t.txt", 300)
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            str(model),
            "--data",
            str(text),
            "--seq-len",
            "16",
            "--max-tokens",
            "64",
            "--no-speed",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    doc = _strict_load(out.read_text())
    row = doc["models"][0]  # type: ignore[index]
    assert row["nll"] > 700 and math.isfinite(row["nll"])  # the case that used to say Infinity
    assert row["ppl"] is None
