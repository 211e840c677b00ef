"""SmolLM2-135M: a skip draft and an exit draft give generate()'s tokens (CLI and API)."""

from __future__ import annotations

import json

import pytest
import torch

from depthlens.cli.main import main

pytestmark = pytest.mark.e2e
PROMPT = "The history of the city begins in the Roman period, when"


def test_skip_and_exit_drafts_give_generate_tokens_on_smollm2(tmp_path) -> None:
    from depthlens.models import load_model
    from depthlens.speculate import speculate

    lm = load_model("smollm2-135m")
    ids = lm.tokenizer(PROMPT)["input_ids"]
    with torch.inference_mode():
        ref = lm.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12)  # type: ignore[operator]
    want = ref[0, len(ids) :].tolist()
    for draft in ("skip:20-25", "exit:20"):
        got = speculate(lm, ids, draft, max_new_tokens=12, k=3, vocab_ids=torch.arange(8192))
        assert got.generated == want, draft
    out = tmp_path / "g.json"
    argv = ["generate", "smollm2-135m", "--draft", "exit:24", "--max-new-tokens", "12"]
    assert main([*argv, "-k", "2", "-o", str(out), PROMPT]) == 0
    assert json.loads(out.read_text())["tokens"] == want
