"""End to end on the real default model (SmolLM2-135M) through the CLI, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from tiny_models import tiny_gemma3

from depthlens.cli.main import main

pytestmark = pytest.mark.e2e  # every test here loads the real SmolLM2-135M

CAL = ["--seq-len", "512", "--max-tokens", "2048", "--quiet"]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


def test_prune_real_model_reload_generate_and_perplexity(tmp_path, capsys):
    out = tmp_path / "pruned"
    rc = main(
        [
            "prune",
            "smollm2-135m",
            "--method",
            "replaceme-ls",
            "--remove",
            "3",
            *CAL,
            "--holdout-every",
            "4",
            "--eval-data",
            "wiki-eval",
            "--eval-tokens",
            "512",
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "relative residual" in text or "rel_residual_ls_heldout" in text
    m = re.search(r"perplexity on wiki-eval \((\d+) tokens\): ([\d.]+) -> ([\d.]+)", text)
    assert m, text
    before, after = float(m.group(2)), float(m.group(3))
    assert 1.0 < after / before < 5.0, (before, after)
    man = json.loads((out / "depthlens.json").read_text())
    assert man["method"] == "replaceme-ls" and len(man["removed"]) == 3
    assert man["num_layers"] == man["model"]["num_layers"] == 27
    assert man["data"]["source"]["name"] == "wiki-calib"  # the calibration text
    assert man["tokens"]["calibration"] == 2048 and man["plan"]["kind"] == "depthlens.cut_plan"
    assert man["base_model"]["fingerprint"] != man["model"]["fingerprint"]
    code = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(out)!r})
        m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval()
        assert m.config.num_hidden_layers == 27 and len(m.model.layers) == 27
        ids = tok("The history of the city", return_tensors="pt").input_ids
        out = m.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
        assert out.shape[1] == ids.shape[1] + 8
        print("ok", tok.decode(out[0, ids.shape[1]:]))
    """)
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-2000:]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--remove", "0"], "--remove must be at least 1"),
        (["--ratio", "1.5"], "--ratio must be strictly between 0 and 1"),
        (["--ratio", "0"], "--ratio must be strictly between 0 and 1"),
    ],
)
def test_bad_amount_is_one_line_exit_2(argv, needle, tmp_path, capsys):
    rc = main(["plan", "smollm2-135m", *argv])
    assert rc == 2 and needle in _err(capsys)


def test_remove_all_blocks_refused(capsys):
    rc = main(["plan", "smollm2-135m", "--method", "last", "--remove", "30", *CAL])
    assert rc == 2 and "remove at most 28" in _err(capsys)


def test_existing_output_refused(tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    rc = main(["prune", "smollm2-135m", "--method", "last", "--remove", "2", "-o", str(out)])
    assert rc == 2 and "--overwrite" in _err(capsys)


def test_too_little_calibration_text(capsys):
    rc = main(
        [
            "plan",
            "smollm2-135m",
            "--method",
            "replaceme-ls",
            "--remove",
            "2",
            "--seq-len",
            "256",
            "--max-tokens",
            "512",
            "--quiet",
        ]
    )
    assert rc == 2 and "too little calibration text" in _err(capsys)


def test_overlapping_calibration_and_evaluation_refused(tmp_path, capsys):
    rc = main(
        [
            "prune",
            "smollm2-135m",
            "--method",
            "last",
            "--remove",
            "2",
            "--data",
            "wiki",
            "--eval-data",
            "wiki-eval",
            "-o",
            str(tmp_path / "p"),
        ]
    )
    assert rc == 2 and "share" in _err(capsys)


def test_replaceme_on_gemma3_names_a_working_method(tmp_path, capsys, real_lm):
    d = tmp_path / "gemma3"
    tiny_gemma3().save_pretrained(d)
    real_lm.tokenizer.save_pretrained(d)  # tokenizer only needed to cut windows
    # Windows within the tiny model's 64-token context, so the method check is what fails.
    rc = main(
        [
            "plan",
            str(d),
            "--method",
            "replaceme-ls",
            "--remove",
            "2",
            "--seq-len",
            "64",
            "--max-tokens",
            "2048",
            "--quiet",
        ]
    )
    msg = _err(capsys)
    assert rc == 2 and "--method angular" in msg, msg


def test_interrupted_save_leaves_no_checkpoint(tmp_path, capsys, monkeypatch):
    from transformers import PreTrainedModel

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", interrupted)
    out = tmp_path / "p"
    rc = main(["prune", "smollm2-135m", "--method", "last", "--remove", "2", *CAL, "-o", str(out)])
    assert rc == 130 and "nothing partial" in _err(capsys)
    assert list(tmp_path.iterdir()) == []
