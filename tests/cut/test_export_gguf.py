"""GGUF export round trip on a tiny cut Llama with a tiny BPE tokenizer; HF loading paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import random_windows
from tiny_models import _LLAMA_KW, _finish
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from depthlens.arch.spec import resolve_arch
from depthlens.cli.main import main
from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned
from depthlens.export.gguf import export_gguf, permute_qk
from depthlens.models.loading import LoadedModel

TEXT = ["the cat sat on the mat", "a dog ran in the park", "the sun is warm today"] * 20


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in memory (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_pruned(tmp: Path, keep_teacher: bool = False) -> Any:
    """Cut a 6-block tiny Llama (replaceme-multi) and save it with the tokenizer.

    Returns (checkpoint dir, token ids), plus the uncut model's dir with ``keep_teacher``.
    """
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(**{**_LLAMA_KW, "num_hidden_layers": 6, "vocab_size": len(tok)})
    model = _finish(LlamaForCausalLM(cfg), 6)
    lm = LoadedModel(model, tok, resolve_arch(model), ref="tiny-llama6", source="test")
    if keep_teacher:
        model.save_pretrained(tmp / "teacher")
        tok.save_pretrained(tmp / "teacher")
    w = random_windows(n=10, seq_len=16, vocab=len(tok))
    plan = plan_cut(lm, w, "replaceme-multi", CutOptions(blocks=(2, 4)))
    apply_cut_(lm, plan)
    out = save_pruned(lm, plan, tmp / "pruned")
    ids = torch.tensor([tok("the cat ran in the park").input_ids])
    return (out, ids, tmp / "teacher") if keep_teacher else (out, ids)


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


def test_export_refuses_other_families_and_writes_nothing(tmp_path, capsys):
    from tiny_models import tiny_model

    d = tmp_path / "qwen"
    tiny_model("qwen2").save_pretrained(d)
    out = tmp_path / "q.gguf"
    capsys.readouterr()  # drop save_pretrained's progress bar
    code = main(["export", str(d), "--gguf", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Llama family" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".q.gguf*"))
    code = main(["export", str(d), "--gguf", str(out), "--type", "q4"])
    assert code == 2 and "unknown --type" in capsys.readouterr().err


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
