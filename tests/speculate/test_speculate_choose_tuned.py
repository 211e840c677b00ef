"""The draft chooser with a tuned lens: ``exit:E:tuned:DIR`` drafts, scored and costed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import random_windows, wrap_tiny
from fixtures_saved import hf_greedy, save_tiny, write_text

from depthlens.cli.main import main
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope
from depthlens.speculate.build import draft_head
from depthlens.speculate.choose import AgreementProbe, exit_candidates, tuned_exit_candidates
from depthlens.speculate.cost import CostTerms
from depthlens.speculate.recommend import choose_draft
from depthlens.tuned.lens import TunedLens, save_lens


def _random_lens(lm: LoadedModel, scale: float = 0.5) -> TunedLens:
    """A tuned lens whose translators move the states (so it disagrees with the logit lens)."""
    lens = TunedLens.for_model(lm)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.copy_(scale * torch.randn(t.weight.shape, generator=gen))
    return lens.eval()


def _saved(lm: LoadedModel, lens: TunedLens, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_lens(lens, folder, Envelope(kind="depthlens.tuned_lens", model=lm.identity()), {})
    return folder


def _naive_agreement(lm: LoadedModel, lens: TunedLens, ids: torch.Tensor, e: int) -> float:
    """Top-1 of the tuned lens on HF's own hidden state h_e vs the model's top-1."""
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_hidden_states=True)
        h = out.hidden_states[e]  # (B, T, d): the stream entering block e
        z = lens.logits(h.reshape(-1, h.shape[-1]), e).reshape(*h.shape[:2], -1)
        return float((z.argmax(-1) == out.logits.argmax(-1)).float().mean())


def test_tuned_exit_agreement_matches_a_naive_readout() -> None:
    lm = wrap_tiny("llama")
    w = random_windows(n=2, seq_len=16)
    probe = AgreementProbe(lm, w, draft_head(lm, None))
    lens = _random_lens(lm)
    cands = tuned_exit_candidates(probe, lens, "/lens")
    assert [c.draft for c in cands] == [f"exit:{e}:tuned:/lens" for e in range(1, lm.num_layers)]
    assert all(c.translator for c in cands)
    for c in cands:
        assert c.acceptance == pytest.approx(_naive_agreement(lm, lens, w.input_ids, c.n_blocks))
    # An untrained (identity) tuned lens is the logit lens exactly.
    ident = TunedLens.for_model(lm).eval()
    plain = [c.acceptance for c in exit_candidates(probe)]
    assert [c.acceptance for c in tuned_exit_candidates(probe, ident, "/x")] == plain


def test_the_translator_is_paid_in_every_draft_step() -> None:
    t = CostTerms(1.0, 2.0, 8.0, 1.0, {k: 40.0 + k for k in range(1, 9)}, 40.0, 30, 128, 3.0)
    assert t.draft_step_s(10, True, translator=True) == t.draft_step_s(10, True) + 3.0
    assert t.speedup(10, 0.5, 2, True, True) < t.speedup(10, 0.5, 2, True)
    back = CostTerms(**{**t.to_dict(), "verify_s": t.verify_s})
    assert back == t


def test_choose_draft_scores_tuned_exits_and_times_the_translator(tmp_path) -> None:
    lm = wrap_tiny("llama")
    folder = _saved(lm, _random_lens(lm), tmp_path / "lens")
    choice = choose_draft(lm, random_windows(n=2, seq_len=16), max_skip=1, tuned=folder)
    tuned = [r for r in choice.candidates if ":tuned:" in r["draft"]]
    assert len(tuned) == lm.num_layers - 1
    assert all(r["draft"].endswith(f":tuned:{folder.resolve()}") for r in tuned)
    assert choice.costs["translator_s"] > 0
    assert choice.options["tuned"] == str(folder.resolve())
    plain = choose_draft(lm, random_windows(n=2, seq_len=16), max_skip=1)
    assert not any(":tuned:" in r["draft"] for r in plain.candidates)
    assert plain.costs["translator_s"] == 0.0


def test_a_lens_in_the_tuned_lens_layout_scores_the_same(tmp_path) -> None:
    from depthlens.tuned.lens import export_lens

    lm = wrap_tiny("llama")
    native = _saved(lm, _random_lens(lm), tmp_path / "native")
    export_lens(native, tmp_path / "tl")
    w = random_windows(n=2, seq_len=16)
    a = choose_draft(lm, w, max_skip=1, tuned=native).candidates
    b = choose_draft(lm, w, max_skip=1, tuned=tmp_path / "tl").candidates
    tuned_a = [r["acceptance"] for r in a if ":tuned:" in r["draft"]]
    assert tuned_a == [r["acceptance"] for r in b if ":tuned:" in r["draft"]]
    assert len(tuned_a) == lm.num_layers - 1


def test_the_draft_cli_with_tuned_recommends_a_draft_generate_reads(tmp_path, capsys) -> None:
    model = save_tiny(tmp_path / "tiny")
    text = write_text(tmp_path / "t.txt", 600)
    lm = wrap_tiny("llama")
    lens_dir = tmp_path / "lens"
    # lens train on the saved tiny model: its fingerprint is the loaded checkpoint's.
    data = ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]
    argv = ["lens", "train", str(model), *data, "--steps", "2", "--eval-tokens", "0"]
    assert main([*argv, "-o", str(lens_dir)]) == 0
    out = tmp_path / "draft.json"
    argv = ["draft", str(model), *data, "--tuned", str(lens_dir), "--max-skip", "1"]
    assert main([*argv, "--measure-tokens", "4", "-o", str(out)]) == 0
    table = [ln for ln in capsys.readouterr().out.splitlines() if ln.lstrip()[:1].isdigit()]
    assert [int(ln.split()[0]) for ln in table] == list(range(1, lm.num_layers))
    choice = json.loads(out.read_text())
    drafts = [r["draft"] for r in choice["candidates"]]
    assert sum(":tuned:" in d for d in drafts) == lm.num_layers - 1
    # Whatever it recommends, generate --draft choice: gives plain generate's tokens.
    gen = tmp_path / "g.json"
    prompt = "w5 w9 w17 w3 w44"
    argv = ["generate", str(model), "--draft", f"choice:{out}", "--max-new-tokens", "8"]
    assert main([*argv, "-o", str(gen), prompt]) == 0
    assert json.loads(gen.read_text())["tokens"] == hf_greedy(model, prompt, 8)
    tun = tmp_path / "t.json"
    argv = ["generate", str(model), "--draft", f"exit:2:tuned:{lens_dir}", "--max-new-tokens", "8"]
    assert main([*argv, "-o", str(tun), prompt]) == 0
    assert json.loads(tun.read_text())["tokens"] == hf_greedy(model, prompt, 8)
    capsys.readouterr()


def test_the_draft_cli_refuses_a_missing_lens_before_loading(tmp_path, monkeypatch, capsys) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("depthlens.cli.generate_cmd.load_model_from_args", refuse)
    assert main(["draft", "smollm2-135m", "--tuned", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "tuned lens folder" in err and "\n" not in err
