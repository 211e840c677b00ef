"""The residual-scheme example of docs/ADDING.md, executed: one record, trained and studied."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_export import trained_like
from test_train_schemes import D, H, L, T, lab, naive_attn, naive_mlp, naive_norm
from train_helpers import eval_text, tiny_args, write_text

from depthlens.cli.main import main
from depthlens.results import read_result
from depthlens.train.schemes import SCHEMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "ADDING.md"


@pytest.fixture
def lns_scaled() -> Iterator[Any]:
    """The example's record, registered for one test only."""
    (code,) = re.findall(r"```python example=scheme\n(.*?)```", DOC.read_text("utf-8"), re.S)
    with SCHEMES.scoped():
        ns: dict[str, Any] = {}
        exec(code, ns)  # noqa: S102 - our own documentation
        assert SCHEMES["lns-scaled"] is ns["LNS_SCALED"]
        yield ns["LNS_SCALED"]
    assert "lns-scaled" not in SCHEMES


def test_the_example_block_is_its_formula(lns_scaled: Any) -> None:
    from depthlens.train.model import rope_cos_sin

    m = lab("lns-scaled")
    h = torch.randn(2, T, D, generator=torch.Generator().manual_seed(1))
    cos, sin = rope_cos_sin(T, D // H, 10000.0, h.device)
    with torch.no_grad():
        for idx in (0, L - 1):
            blk, ell = m.model.layers[idx], idx + 1
            at, ff = blk.attention, blk.feed_forward
            x = h + naive_attn(
                naive_norm(h, at.norm.weight) / math.sqrt(ell), at.branch
            ) / math.sqrt(L)
            want = x + naive_mlp(
                naive_norm(x, ff.norm.weight) / math.sqrt(ell), ff.branch
            ) / math.sqrt(L)
            torch.testing.assert_close(blk(h, cos, sin), want, rtol=1e-5, atol=1e-5)


def test_the_example_exports_as_llama(lns_scaled: Any, tmp_path: Path) -> None:
    from depthlens.models.loading import load_model
    from depthlens.train.export import export_model
    from depthlens.train.tokenizer import train_tokenizer

    tok = train_tokenizer(["the cat sat on the mat. " * 20, "a dog ran in the park. " * 20], 300)
    model = trained_like("lns-scaled", len(tok))
    assert export_model(model, tok, tmp_path) == "LlamaForCausalLM"
    ids = torch.randint(0, len(tok), (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, load_model(str(tmp_path)).model(input_ids=ids).logits
    assert float((a - b).norm() / a.norm()) <= 1e-5


def test_the_example_trains_and_is_studied(lns_scaled: Any, tmp_path: Path) -> None:
    text = write_text(tmp_path / "t.txt")
    model = tmp_path / "m"
    assert main(tiny_args(text, model, 4, **{"--scheme": "lns-scaled"})) == 0
    env, trained = read_result(model / "train.json", "train")
    assert env.options["scheme"] == "lns-scaled" and trained["saved_as"] == "LlamaForCausalLM"
    shape = ["--width", "16", "--heads", "2", "--context", "16", "--batch-size", "4"]
    data = ["--data", str(text), "--eval-data", str(eval_text(text)), "--vocab-size", "300"]
    study = [*shape, *data, "--tokens", "256", "--warmup", "1", "--measure-tokens", "64"]
    out = tmp_path / "study"
    args = ["study", "depth", "--depths", "2", "--schemes", "pre-ln,lns-scaled", *study]
    assert main([*args, "--jobs", "1", "--device", "cpu", "-o", str(out), "--quiet"]) == 0
    env, payload = read_result(out / "study.json", "study")
    runs = {r["scheme"]: r for r in payload["runs"]}
    assert set(runs) == {"pre-ln", "lns-scaled"}
    assert payload["schemes"]["lns-scaled"]["formula"] == "h + F(N(h) / √ℓ) / √L"
    assert len(runs["lns-scaled"]["removal_cost"]) == 2 and runs["lns-scaled"]["eval_loss"] > 0
    assert "lns-scaled" in (out / "report.html").read_text()
