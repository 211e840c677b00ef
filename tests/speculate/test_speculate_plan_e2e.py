"""SmolLM2-135M: ``plan --objective acceptance`` writes a plan that drafts generate()'s tokens."""

from __future__ import annotations

import json

import pytest
import torch

from depthlens.cli.main import main

pytestmark = pytest.mark.e2e
PROMPT = "The history of the city begins in the Roman period, when"


def test_acceptance_plan_drafts_exactly_on_smollm2(tmp_path, capsys) -> None:
    from depthlens.models import load_model

    plan = tmp_path / "plan.json"
    argv = ["plan", "smollm2-135m", "--objective", "acceptance", "--remove", "2"]
    assert main([*argv, "--max-tokens", "256", "--seq-len", "128", "--quiet", "-o", str(plan)]) == 0
    saved = json.loads(plan.read_text())
    assert len(saved["removed"]) == 2 and 0 not in saved["removed"]
    assert saved["selection"]["agreement"] > 0.5  # two of 30 blocks: most tokens agree
    capsys.readouterr()
    lm = load_model("smollm2-135m")
    ids = lm.tokenizer(PROMPT)["input_ids"]
    with torch.inference_mode():
        ref = lm.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12)  # type: ignore[operator]
    out = tmp_path / "g.json"
    argv = ["generate", "smollm2-135m", "--draft", f"plan:{plan}", "--max-new-tokens", "12"]
    assert main([*argv, "-k", "2", "-o", str(out), PROMPT]) == 0
    assert json.loads(out.read_text())["tokens"] == ref[0, len(ids) :].tolist()
