"""repr / similarity through the API on tiny models, and the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.cli.main import main
from depthlens.repr import ReprOptions, analyse_repr, similarity
from depthlens.repr.geometry import anisotropy, sample_indices


def test_token_mode_reads_the_models_own_hidden_states() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=6, seq_len=16)
    opts = ReprOptions(max_samples=40, cka_batch=16, seed=3)
    res = analyse_repr(lm, w, opts)
    m, L = res.metrics, lm.num_layers
    assert len(res.layers) == L + 1 == len(m["anisotropy"]) == len(m["cka"])
    # naive: HF's own hidden states at the same sampled positions (first position dropped)
    with torch.no_grad():
        hs = lm.model(
            input_ids=w.input_ids, attention_mask=w.attention_mask, output_hidden_states=True
        ).hidden_states
    keep = w.attention_mask.bool().clone()
    keep[:, 0] = False
    pick = sample_indices(int(keep.sum()), 40, 3)
    for l in range(L):  # HF's last entry is after the final norm; ours is the raw h_L
        assert m["anisotropy"][l] == pytest.approx(anisotropy(hs[l][keep][pick]), abs=1e-5)
    assert all(abs(m["cka"][l][l] - 1) < 1e-9 for l in range(L + 1))
    assert res.options["max_samples"] == 40 and res.options["seed"] == 3
    assert res.samples["geometry"]["of"] == int(keep.sum())
    with_first = analyse_repr(
        lm, w, ReprOptions(max_samples=40, cka_batch=16, include_first_token=True)
    )
    assert with_first.tokens["n_tokens"] == int(w.attention_mask.sum())


def test_similarity_of_a_model_with_itself_is_one_on_the_diagonal() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=4, seq_len=16)
    res = similarity(lm, lm, w, ReprOptions(max_samples=10, cka_batch=20))
    cka = torch.tensor(res.metrics["cka"])
    assert cka.shape == (lm.num_layers + 1,) * 2
    assert torch.allclose(cka.diagonal(), torch.ones(lm.num_layers + 1, dtype=cka.dtype), atol=1e-9)
    assert res.model_b["ref"] == "tiny-llama"


def _err(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_cli_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "mobilenet-v2" in _err(["repr", "mobilenet-v2", "--data", "wiki-calib"], capsys)
    assert "text model" in _err(["repr", "smollm2-135m", "--data", "fashion-mnist"], capsys)
    assert "labelled data" in _err(
        ["repr", "smollm2-135m", "--data", "wiki-calib", "--probe"], capsys
    )
    assert "fewer than the 1000000" in _err(
        ["repr", "all-minilm-l6-v2", "--data", "text-domain", "--max-samples", "1000000"], capsys
    )
    assert "--cka-batch" in _err(["repr", "smollm2-135m", "--cka-batch", "2"], capsys)
    assert "did you mean 'mean'" in _err(["repr", "smollm2-135m", "--pool", "meen"], capsys)
    out = tmp_path / "r.json"
    out.write_text("{}")
    assert "already exists" in _err(["repr", "smollm2-135m", "-o", str(out)], capsys)


def test_the_page_escapes_text_from_models_and_data() -> None:
    from depthlens.repr.report import repr_page

    lm = wrap_tiny("llama")
    res = analyse_repr(
        lm, random_windows(n=4, seq_len=16), ReprOptions(max_samples=20, cka_batch=16)
    )
    res.model["ref"] = '<img src=x onerror="alert(1)">'
    res.data["name"] = "<script>bad()</script>"
    html = repr_page(res)
    assert "<img src=x" not in html and "<script>bad" not in html
    assert "&lt;img src=x" in html and 'id="plot-anisotropy"' in html


def test_first_position_pooling_is_refused_for_causal_lms() -> None:
    from depthlens.data.labelled import LabelledSet, LabelledSplits
    from depthlens.errors import DepthlensError

    ds = LabelledSet("toy", torch.tensor([0, 1]), None, ("a b", "c d"), ("x", "y"))
    with pytest.raises(DepthlensError, match="--pool mean"):
        analyse_repr(wrap_tiny("llama"), LabelledSplits(ds, ds, {}), ReprOptions(pool="first"))
