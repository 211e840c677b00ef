"""``plan --objective acceptance``: blocks skipped by greedy top-1 agreement, as a cut plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import random_windows, wrap_tiny
from fixtures_saved import hf_greedy, save_tiny, write_text

from depthlens.cli.main import main
from depthlens.cut import apply_cut_, load_plan
from depthlens.cut.plan_io import save_plan
from depthlens.models.loading import LoadedModel
from depthlens.speculate import speculate
from depthlens.speculate.build import draft_head
from depthlens.speculate.choose import AgreementProbe, greedy_skips
from depthlens.speculate.plan import ACCEPTANCE_METHOD, plan_by_acceptance


def _naive_agreement(lm: LoadedModel, removed: tuple[int, ...], ids: torch.Tensor) -> float:
    """Top-1 of a copy with the blocks really removed (apply_cut_) vs the original's."""
    from depthlens.cut.plan import CutPlan
    from depthlens.results import Envelope

    cut = LoadedModel(copy.deepcopy(lm.model), None, lm.arch, ref="c", source="test")
    env = Envelope(kind=CutPlan.KIND, model=lm.identity())
    apply_cut_(cut, CutPlan(env, "t", lm.num_layers, removed, None, {}, {}, {}))
    with torch.no_grad():
        a = lm.model(input_ids=ids).logits.argmax(-1)
        b = cut.model(input_ids=ids).logits.argmax(-1)
    return float((a == b).float().mean())


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_the_plan_is_the_greedy_agreement_search(name: str) -> None:
    lm = wrap_tiny(name)
    w = random_windows(n=2, seq_len=16)
    plan = plan_by_acceptance(lm, w, n=2)
    grown = greedy_skips(AgreementProbe(lm, w, draft_head(lm, None)), 2, floor=0.0)
    assert plan.removed == tuple(sorted(grown[-1].skipped)) and len(plan.removed) == 2
    assert plan.method == ACCEPTANCE_METHOD and plan.options["objective"] == "acceptance"
    assert plan.selection["agreement_by_n"] == [c.acceptance for c in grown]
    assert 0 not in plan.removed  # every fixture's block 0 starts an attention kind
    naive = _naive_agreement(lm, plan.removed, w.input_ids)
    assert plan.selection["agreement"] == pytest.approx(naive)


def test_the_saved_plan_drafts_exactly(tmp_path: Path) -> None:
    lm = wrap_tiny("llama")
    plan = plan_by_acceptance(lm, random_windows(n=2, seq_len=16), ratio=0.5)
    save_plan(plan, tmp_path / "p.json")
    back = load_plan(tmp_path / "p.json")
    assert back.removed == plan.removed and back.selection == plan.selection
    prompt = [1, 5, 9, 17, 33, 60]
    with torch.no_grad():
        ref = lm.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=12)  # type: ignore[operator]
    res = speculate(lm, prompt, f"plan:{tmp_path / 'p.json'}", max_new_tokens=12, k=3)
    assert res.generated == ref[0, len(prompt) :].tolist()


def test_plan_cli_writes_a_plan_generate_accepts(tmp_path: Path, capsys) -> None:
    model = save_tiny(tmp_path / "tiny")
    text = write_text(tmp_path / "t.txt", 600)
    data = ["--data", str(text), "--seq-len", "16", "--max-tokens", "64", "--quiet"]
    out = tmp_path / "p.json"
    argv = ["plan", str(model), *data, "--objective", "acceptance", "--remove", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ACCEPTANCE_METHOD in printed and "agreement" in printed
    saved = json.loads(out.read_text())
    assert saved["method"] == ACCEPTANCE_METHOD and len(saved["removed"]) == 2
    assert saved["options"]["objective"] == "acceptance"
    prompt = "w5 w9 w17 w3 w44"
    gen = tmp_path / "g.json"
    argv = ["generate", str(model), "--draft", f"plan:{out}", "--max-new-tokens", "8"]
    assert main([*argv, "-k", "2", "-o", str(gen), prompt]) == 0
    assert json.loads(gen.read_text())["tokens"] == hf_greedy(model, prompt, 8)


@pytest.mark.parametrize("method", ["angular", "replaceme-multi", "replaceme-ls"])
def test_acceptance_with_any_method_is_one_line(tmp_path: Path, method, capsys) -> None:
    # the default method too: an explicit --method is never silently ignored
    text = write_text(tmp_path / "t.txt", 100)
    argv = ["plan", "smollm2-135m", "--data", str(text), "--objective", "acceptance"]
    assert main([*argv, "--remove", "2", "--method", method]) == 2
    err = capsys.readouterr().err.strip()
    assert "--objective acceptance" in err and "\n" not in err
