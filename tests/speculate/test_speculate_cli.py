"""``depthlens generate`` through the CLI on a saved tiny model: --chat and --draft cut:DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures_saved import hf_greedy, save_tiny, write_text

from depthlens.cli.main import main

# A template over the tiny word-level vocabulary (<s>, </s> and the words w3..w127).
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> w7 {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> w8 {% endif %}"
)
PROMPT = "w5 w9 w17 w3 w44"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    path = save_tiny(tmp_path_factory.mktemp("gen") / "tiny")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


def _generate(model: Path, out: Path, *argv: str) -> list[int]:
    args = ["generate", str(model), "--max-new-tokens", "10", "-k", "3", "-o", str(out)]
    assert main([*args, *argv]) == 0
    return list(json.loads(out.read_text())["tokens"])


def test_chat_wraps_the_prompt_and_keeps_generate_tokens(model: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    msgs = [{"role": "user", "content": PROMPT}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids[:3] == tok("<s> w7")["input_ids"] + tok(PROMPT)["input_ids"][:1]
    m = AutoModelForCausalLM.from_pretrained(model).eval()
    with torch.no_grad():
        ref = m.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=10)
    want = ref[0, len(ids) :].tolist()
    got = _generate(model, tmp_path / "c.json", "--draft", "skip:2", "--chat", PROMPT)
    assert got == want
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["token_counts"]["prompt"] == len(ids)  # the template's tokens were fed
    plain = _generate(model, tmp_path / "p.json", "--draft", "skip:2", PROMPT)
    assert plain == hf_greedy(model, PROMPT, 10)


def test_a_cut_checkpoint_drafts_exactly(model: Path, tmp_path: Path, capsys) -> None:
    text = write_text(tmp_path / "t.txt", 600)
    cut = tmp_path / "cut"
    data = ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]
    argv = ["prune", str(model), *data, "--method", "angular", "--remove", "2", "-o", str(cut)]
    assert main(argv) == 0
    got = _generate(model, tmp_path / "g.json", "--draft", f"cut:{cut}", PROMPT)
    assert got == hf_greedy(model, PROMPT, 10)
    res = json.loads((tmp_path / "g.json").read_text())
    assert 0 <= res["acceptance"] <= 1 and res["draft"]["kind"] == "cut"
    capsys.readouterr()


def test_a_cut_of_another_model_is_one_line(model: Path, tmp_path: Path, capsys) -> None:
    other = save_tiny(tmp_path / "other", "qwen2")
    text = write_text(tmp_path / "t.txt", 600)
    cut = tmp_path / "cut"
    data = ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]
    argv = ["prune", str(other), *data, "--method", "angular", "--remove", "1", "-o", str(cut)]
    assert main(argv) == 0
    capsys.readouterr()
    argv = ["generate", str(model), "--draft", f"cut:{cut}", "--max-new-tokens", "4", PROMPT]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "must be a cut of the model" in err.splitlines()[-1] and "Traceback" not in err


def test_a_reduced_draft_head_on_a_short_context_model(model: Path, tmp_path: Path) -> None:
    """--draft-vocab counts tokens in windows no longer than the model's 64-token context."""
    text = write_text(tmp_path / "t.txt", 600)
    argv = ["--draft", "exit:2", "--draft-vocab", "20", "--data", str(text), PROMPT]
    assert _generate(model, tmp_path / "v.json", *argv) == hf_greedy(model, PROMPT, 10)
