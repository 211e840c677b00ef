"""Model identity includes the weights: one config, other tensors, another model (issue 20.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_run import assert_one_error, run_cli
from conftest import random_windows, wrap_tiny
from fixtures_saved import save_tiny, write_text
from tiny_models import tiny_model

from depthlens.cli.main import main
from depthlens.cut import CutOptions, plan_cut, save_plan
from depthlens.data import load_text, make_windows
from depthlens.errors import DepthlensError
from depthlens.models import digest
from depthlens.models.loading import load_model
from depthlens.profiling import ProfileOptions, profile
from depthlens.results import Envelope, check_same_model, model_fingerprint
from depthlens.tuned.lens import TunedLens, load_lens, save_lens


def _nudged(name: str = "llama") -> torch.nn.Module:
    """The tiny model with one weight changed by far more than bfloat16 precision."""
    m = tiny_model(name)
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] += 0.5
    return m


def test_same_config_other_weights_other_identity() -> None:
    a, b = wrap_tiny("llama"), wrap_tiny("llama")
    ia = a.identity()
    assert ia["weights"] == b.identity()["weights"]  # same seed: same network
    b.model = _nudged()
    ib = b.identity()
    assert ia["config"] == ib["config"] and ia["n_params"] == ib["n_params"]
    assert ia["weights"] != ib["weights"] and ia["fingerprint"] != ib["fingerprint"]
    assert model_fingerprint(ia, weights=False) == model_fingerprint(ib, weights=False)
    with pytest.raises(DepthlensError, match="same configuration but other weights"):
        check_same_model(ia, ib, "the plan and the model")


def test_digest_follows_in_place_updates_and_not_the_dtype() -> None:
    lm = wrap_tiny("llama")
    before = lm.identity()["weights"]
    with torch.no_grad():  # an optimiser step is an in-place update like this one
        next(lm.model.parameters()).mul_(2)
    assert lm.identity()["weights"] != before
    m32 = tiny_model("llama")
    assert digest.weights_digest(m32) == digest.weights_digest(m32.to(torch.bfloat16))


def test_digest_is_cached_per_checkpoint(tmp_path: Path, monkeypatch: Any) -> None:
    path, cache = save_tiny(tmp_path / "m"), tmp_path / "cache"
    first = load_model(str(path), cache_dir=cache).identity()["weights"]
    assert len(list((cache / "digests").glob("*.json"))) == 1

    def no_hashing(_model: Any) -> str:
        raise AssertionError("the digest should come from the cache")

    monkeypatch.setattr(digest, "weights_digest", no_hashing)
    assert load_model(str(path), cache_dir=cache).identity()["weights"] == first


def test_config_only_result_is_read_with_a_warning(capsys: Any) -> None:
    new = wrap_tiny("llama").identity()
    old = {k: v for k, v in new.items() if k not in ("weights", "fingerprint")}
    check_same_model(old, new, "the old profile and the model")
    assert "identity is config-only" in capsys.readouterr().err


@pytest.fixture()
def twins(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two saved checkpoints with one config and other weights, and a text file."""
    a = save_tiny(tmp_path / "a")
    b = save_tiny(tmp_path / "b", model=_nudged())
    assert json.loads((a / "config.json").read_text()) == json.loads(
        (b / "config.json").read_text()
    )
    return a, b, write_text(tmp_path / "t.txt", 400)


def test_prune_refuses_a_plan_of_the_twin(capsys: Any, tmp_path: Path, twins: Any) -> None:
    a, b, text = twins
    lm = load_model(str(a))
    windows = make_windows(load_text(str(text)), lm.tokenizer, seq_len=16, max_tokens=16 * 12)
    save_plan(plan_cut(lm, windows, "replaceme-ls", CutOptions(n=1)), tmp_path / "plan.json")
    out = tmp_path / "pruned"
    argv = ["prune", str(b), "--plan", str(tmp_path / "plan.json"), "-o", str(out), "--quiet"]
    assert_one_error(*run_cli(capsys, *argv, "--seq-len", "16"), "other weights")
    assert not out.exists()


def test_report_refuses_a_plan_of_the_twin(capsys: Any, tmp_path: Path) -> None:
    lm_a, lm_b = wrap_tiny("llama"), wrap_tiny("llama")
    lm_b.model = _nudged()
    windows = random_windows(n=4)
    opts = ProfileOptions(batch_size=2, lens_kernel="eager", n_max=2)
    profile(lm_a, windows, opts, progress=False).save(tmp_path / "p.json")
    save_plan(plan_cut(lm_b, windows, "angular", CutOptions(n=1)), tmp_path / "plan.json")
    argv = ["report", str(tmp_path / "p.json"), str(tmp_path / "plan.json")]
    rc, err = run_cli(capsys, *argv, "-o", str(tmp_path / "r.html"), "--quiet")
    assert_one_error(rc, err, "other weights")


def test_tuned_lens_of_the_twin_is_refused(tmp_path: Path) -> None:
    lm_a, lm_b = wrap_tiny("llama"), wrap_tiny("llama")
    lm_b.model = _nudged()
    env = Envelope(kind="depthlens.tuned_lens", model=lm_a.identity())
    save_lens(TunedLens.for_model(lm_a), tmp_path, env)
    load_lens(tmp_path, lm_a)
    with pytest.raises(DepthlensError, match="other weights"):
        load_lens(tmp_path, lm_b)


@pytest.mark.e2e
def test_smollm2_with_blocks_reordered_is_another_model() -> None:
    """The issue's case: SmolLM2 with blocks reordered kept the base's fingerprint."""
    from depthlens.arch.spec import blocks_of

    lm = load_model("smollm2-135m")
    base = lm.identity()
    blocks = blocks_of(lm.model, lm.arch)
    blocks[3], blocks[12] = blocks[12], blocks[3]
    moved = lm.identity()
    assert base["config"] == moved["config"] and base["n_params"] == moved["n_params"]
    assert base["weights"] != moved["weights"] and base["fingerprint"] != moved["fingerprint"]


def test_cut_manifest_records_both_weights(tmp_path: Path, twins: Any) -> None:
    """depthlens.json names the base's weights and the cut model's, as later loads see them."""
    a, _, text = twins
    out = tmp_path / "pruned"
    argv = ["prune", str(a), "--method", "replaceme-ls", "--remove", "1", "--data", str(text)]
    assert main([*argv, "--seq-len", "16", "--max-tokens", "128", "-o", str(out), "--quiet"]) == 0
    man = json.loads((out / "depthlens.json").read_text())
    assert man["base_model"]["weights"] == load_model(str(a)).identity()["weights"]
    assert man["model"]["weights"] == load_model(str(out)).identity()["weights"]
