"""GGUF export over every family fixture: a round trip where it exports, a refusal where not.

An exported family reads back (transformers' GGUF loader) to logits within the type's
tolerance, with the tensor names of gguf's own map and the pre-tokenizer found from the
tokenizer itself; any other family is refused from its config.json with exit 2 and one
line, before anything is loaded or written (issue 20, case 8).
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
import torch
from tiny_checkpoints import save_family, tiny_tokenizer
from tiny_models import TINY_FAMILIES

from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.export.gguf import EXPORTERS, export_gguf, export_refusal
from depthlens.export.gguf_vocab import CHECK_TEXT, pre_from_config

STYLE = {"llama": "gpt2", "qwen2": "qwen2"}  # the tokenizer layout of each family's models
EXPORTED = sorted(STYLE)
TOL = {"f32": 1e-5, "f16": 2e-2, "q8_0": 2e-1}  # of the logit range


def _model_type(name: str) -> str:
    return TINY_FAMILIES[name]().config.model_type


REFUSED = sorted(n for n in TINY_FAMILIES if _model_type(n) not in EXPORTERS)


def test_the_fixtures_cover_both_sides() -> None:
    assert {_model_type(n) for n in EXPORTED} == set(EXPORTERS)
    assert {"mistral", "gemma3", "gpt2", "phi", "bert", "lab_post_ln"} <= set(REFUSED)


def _logits(model_dir: Path, ids: torch.Tensor, gguf_file: str | None = None) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    kw = {"gguf_file": gguf_file, "dtype": torch.float32} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("kind", sorted(TOL))
@pytest.mark.parametrize("name", EXPORTED)
def test_round_trip_logits_per_family(name: str, kind: str, tmp_path: Path) -> None:
    ck, ids = save_family(name, tmp_path / name, STYLE[name])
    info = export_gguf(ck, tmp_path / f"{name}.gguf", kind=kind)
    assert info["arch"] == name and info["tokenizer_pre"] == ("gpt-2" if name == "llama" else name)
    a, b = _logits(ck, ids), _logits(tmp_path, ids, f"{name}.gguf")
    assert float((a - b).abs().max()) <= TOL[kind] * max(1.0, float(a.abs().max()))
    reader = gguf.GGUFReader(tmp_path / f"{name}.gguf")
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight"} <= names
    assert ("blk.0.attn_q.bias" in names) == (name == "qwen2")  # Qwen2's q/k/v biases


@pytest.mark.parametrize("name", REFUSED)
def test_other_families_are_refused_before_any_work(name: str, tmp_path: Path, capsys) -> None:
    d = tmp_path / name
    TINY_FAMILIES[name]().save_pretrained(d)
    (d / "model.safetensors").write_bytes(b"not loaded")  # a refusal must not read weights
    out = tmp_path / "m.gguf"
    capsys.readouterr()
    code = main(["export", str(d), "--gguf", str(out)])
    err = capsys.readouterr().err.strip()
    model_type = json.loads((d / "config.json").read_text())["model_type"]
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"'{model_type}'" in err and "transformers" not in err.lower()
    assert not out.exists() and not list(tmp_path.glob(".m.gguf*"))


def test_config_flags_the_exporter_cannot_write_are_refused() -> None:
    assert export_refusal({"model_type": "llama", "attention_bias": True}) is not None
    assert export_refusal({"model_type": "qwen2", "use_sliding_window": True}) is not None
    rope = {"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert "rope scaling 'llama3'" in str(export_refusal(rope))
    assert export_refusal({"model_type": "qwen2", "use_sliding_window": False}) is None


def test_pre_tokenizer_is_read_from_the_tokenizer_config(tmp_path: Path) -> None:
    for style, want in (("gpt2", "gpt-2"), ("qwen2", "qwen2"), ("whitespace", None)):
        tiny_tokenizer(style).save_pretrained(tmp_path / style)
        spec = json.loads((tmp_path / style / "tokenizer.json").read_text())
        assert pre_from_config(spec["pre_tokenizer"]) == want, style


def test_an_unknown_pre_tokenizer_is_refused_unless_named(tmp_path: Path) -> None:
    ck, ids = save_family("llama", tmp_path / "ck", "whitespace")
    with pytest.raises(DepthlensError, match="--tokenizer-pre"):
        export_gguf(ck, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
    info = export_gguf(ck, tmp_path / "m.gguf", pre="gpt-2", kind="f32")
    assert info["tokenizer_pre"] == "gpt-2"


def test_the_check_text_is_llama_cpps() -> None:
    # The known hashes hold only for this exact text (checked on the real tokenizers in
    # test_export_real.py); guard it against an accidental edit.
    import hashlib

    digest = hashlib.sha256(CHECK_TEXT.encode()).hexdigest()
    assert digest == "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da"
