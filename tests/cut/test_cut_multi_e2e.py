"""The real SmolLM2: replaceme-multi prune -> GGUF q8_0 -> transformers; generate, pipeline."""

from __future__ import annotations

import pytest
import torch

from depthlens.cli.main import main


@pytest.mark.e2e
def test_prune_multi_export_gguf_and_use(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    ck = tmp_path / "pruned"
    code = main(
        [
            "prune",
            "smollm2-135m",
            "--method",
            "replaceme-multi",
            "--blocks",
            "12-14,20",
            "--max-tokens",
            "2048",
            "--seq-len",
            "256",
            "--quiet",
            "-o",
            str(ck),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "merge" in capsys.readouterr().out
    tok = AutoTokenizer.from_pretrained(ck)
    model = AutoModelForCausalLM.from_pretrained(ck).eval()
    assert model.config.num_hidden_layers == 26
    ids = tok("The capital of France is Paris. The capital of Italy is", return_tensors="pt")
    with torch.no_grad():
        ref = model(**ids).logits
    gguf = tmp_path / "pruned-q8.gguf"
    assert main(["export", str(ck), "--gguf", str(gguf), "--type", "q8_0"]) == 0
    back = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    with torch.no_grad():
        got = back(**ids).logits
    # q8_0 rounds every weight to 8 bits per block of 32: the same next token almost
    # everywhere, logits within a few percent of their range
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    assert agree >= 0.9 and float((got - ref).abs().max()) < 0.1 * float(ref.abs().max())
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.input_ids.shape[1] + 4
    text = pipeline("text-generation", model=model, tokenizer=tok)(
        "The capital of France is", max_new_tokens=3, do_sample=False
    )[0]["generated_text"]
    assert text.startswith("The capital of France is")
    auto = AutoModelForCausalLM.from_pretrained(ck, device_map="auto").eval()
    with torch.no_grad():
        torch.testing.assert_close(auto(**ids.to(auto.device)).logits.cpu(), ref)
