"""End to end: the real CLI on the real packaged model (SmolLM2-135M), and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from depthlens.cli.main import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def real_profile(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("prof") / "profile.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "depthlens",
            "profile",
            "smollm2-135m",
            "--data",
            "wiki-calib",
            "--max-tokens",
            "2048",
            "--seq-len",
            "512",
            "--lens-tokens",
            "512",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def test_real_model_profile_values(real_profile) -> None:
    prof, _ = real_profile
    m = prof["metrics"]
    L = prof["model"]["num_layers"]
    assert L == 30 and prof["model"]["class"] == "LlamaForCausalLM"
    assert len(m["rel_contrib_block"]) == L and len(m["resid_norm"]) == L + 1
    # The last block's output *is* h_L: the lens there is the model's own output.
    assert m["lens_top1_agree"][-1] == 1.0
    assert m["lens_kl"][-1] == pytest.approx(0.0, abs=1e-5)
    assert m["lens_jsd"][-1] == pytest.approx(0.0, abs=1e-5)
    # Over the last few blocks the lens KL falls towards 0 (not asserted at all depths).
    kl = m["lens_kl"]
    assert kl[-4] > kl[-3] > kl[-2] > kl[-1]
    assert all(0 <= v <= 0.6932 for v in m["lens_jsd"])
    assert all(v > 0 for v in m["rel_contrib_block"])
    assert 1.0 < prof["summary"]["loss"] < 5.0  # ~PPL 27 on wiki text
    assert 0 < prof["prediction_depth"]["mean"] <= L
    assert sum(prof["prediction_depth"]["histogram"]) == prof["tokens"]["lens"] == 512
    assert prof["tokens"]["residual"] == 2048 - 4  # 4 windows, first positions excluded
    assert prof["data"]["source"]["name"] == "wiki-calib"
    for key in ("lens_tokens", "lens_at", "include_first_token", "last_token_only", "seed"):
        assert key in prof["options"]
    assert prof["kind"] == "depthlens.profile" and prof["schema_version"] >= 1


def test_real_model_table_printed(real_profile) -> None:
    _, stdout = real_profile
    assert "block" in stdout and "lensKL" in stdout
    assert len([ln for ln in stdout.splitlines() if ln.strip()[:2].strip().isdigit()]) >= 30


def _err(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("depthlens: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_missing_model_path(capsys, tmp_path: Path) -> None:
    msg = _err(capsys, ["profile", str(tmp_path / "nope"), "--quiet"])
    assert "not found" in msg


def test_directory_that_is_not_a_model(capsys, tmp_path: Path) -> None:
    msg = _err(capsys, ["profile", str(tmp_path), "--quiet"])
    assert "not a Hugging Face model" in msg


def test_unsupported_architecture(capsys, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    msg = _err(capsys, ["profile", str(tmp_path), "--quiet"])
    assert "--trust-remote-code" in msg or "--arch" in msg


@pytest.mark.parametrize("content", ["", "   \n", "tiny text"])
def test_empty_or_too_short_text(capsys, tmp_path: Path, content: str) -> None:
    f = tmp_path / "t.txt"
    f.write_text(content)
    msg = _err(capsys, ["profile", "--data", str(f), "--quiet"])
    assert "no text" in msg or "fewer than one window" in msg


def test_seq_len_zero(capsys) -> None:
    assert "--seq-len" in _err(capsys, ["profile", "--seq-len", "0", "--quiet"])


def test_existing_output_needs_overwrite(capsys, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text("keep me")
    msg = _err(capsys, ["profile", "-o", str(out), "--quiet"])
    assert "--overwrite" in msg and out.read_text() == "keep me"


def test_bad_option_values(capsys) -> None:
    assert "--lens-tokens" in _err(capsys, ["profile", "--lens-tokens", "-3", "--quiet"])
    with pytest.raises(SystemExit) as exc:  # argparse lists the choices
        main(["profile", "--dtype", "float8", "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--dtype" in err and "bfloat16" in err


def test_models_and_data_listings(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for fam in ("llama", "gemma2", "gpt2", "gpt_neox", "phi", "bert", "smollm2-135m"):
        assert fam in out
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "wiki-calib" in out and "wiki-eval" in out and "news" in out
