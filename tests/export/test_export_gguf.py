"""GGUF export round trip on a tiny cut Llama with a tiny BPE tokenizer; HF loading paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_checkpoints import tiny_pruned

from depthlens.cli.main import main
from depthlens.export.gguf import export_gguf, permute_qk


def test_permute_matches_llama_cpp_formula():
    w = torch.arange(8 * 3, dtype=torch.float32).reshape(8, 3)  # 2 heads of 4 rows
    got = permute_qk(w, 2)
    # llama.cpp: per head, rows (0, 2, 1, 3): the two rotary halves interleaved
    assert got[:4].tolist() == w[[0, 2, 1, 3]].tolist()
    assert got[4:].tolist() == w[[4, 6, 5, 7]].tolist()


@pytest.mark.parametrize("kind, tol", [("f32", 1e-5), ("f16", 2e-2), ("q8_0", 2e-1)])
def test_gguf_round_trip_logits(kind, tol, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ck, ids = tiny_pruned(tmp_path)
    ref_model = AutoModelForCausalLM.from_pretrained(ck).eval()
    info = export_gguf(ck, tmp_path / f"m-{kind}.gguf", kind=kind)
    assert info["block_count"] == 4 and Path(info["path"]).is_file()
    back = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=f"m-{kind}.gguf", dtype=torch.float32
    ).eval()
    assert type(back) is type(ref_model) and back.config.num_hidden_layers == 4
    with torch.no_grad():
        a, b = ref_model(ids).logits, back(ids).logits
    assert float((a - b).abs().max()) <= tol * max(1.0, float(a.abs().max()))
    tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file=f"m-{kind}.gguf")
    assert tok("the cat ran in the park").input_ids[-6:] == ids[0, -6:].tolist()


def test_export_refuses_an_unknown_type_and_writes_nothing(tmp_path, capsys):
    ck, _ids = tiny_pruned(tmp_path)
    out = tmp_path / "q.gguf"
    capsys.readouterr()  # drop save_pretrained's progress bar
    code = main(["export", str(ck), "--gguf", str(out), "--type", "q4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown --type" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".q.gguf*"))


def test_pruned_checkpoint_generate_pipeline_device_map(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    ck, ids = tiny_pruned(tmp_path)
    tok = AutoTokenizer.from_pretrained(ck)
    m = AutoModelForCausalLM.from_pretrained(ck).eval()
    out = m.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5
    gen = pipeline("text-generation", model=m, tokenizer=tok)
    text = gen("the cat", max_new_tokens=4, do_sample=False)[0]["generated_text"]
    assert text.startswith("the cat")
    auto = AutoModelForCausalLM.from_pretrained(ck, device_map="auto").eval()
    with torch.no_grad():
        torch.testing.assert_close(auto(ids.to(auto.device)).logits.cpu(), m(ids).logits)
