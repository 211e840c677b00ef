"""CLI: ``depthlens lens train|eval|report``, ``exit`` and ``profile --lens``; bad input."""

from __future__ import annotations

import json

import pytest
from conftest import wrap_tiny

from depthlens.cli.main import main
from depthlens.results import Envelope
from depthlens.tuned.lens import TunedLens, save_lens

SMALL = ["--max-tokens", "32", "--seq-len", "16", "--quiet"]


@pytest.mark.parametrize(
    "argv",
    [
        ["exit", "smollm2-135m", "--confidence", "1.5"],
        ["exit", "smollm2-135m", "--entropy", "-1"],
        ["exit", "smollm2-135m", "--settled", "0"],
        ["exit", "smollm2-135m", "--settled", "2.5"],
        ["exit", "smollm2-135m", "--confidence", "x"],
        ["exit", "smollm2-135m", "--lens", "tuned:/no/such/lens"],
        ["exit", "smollm2-135m", "--lens", "tunde:/x"],
        ["lens", "eval", "smollm2-135m", "--lens", "tuned:/no/such/lens"],
        ["lens", "train", "smollm2-135m", "--lr", "-1"],
        ["lens", "train", "smollm2-135m", "--warmup", "2"],
        ["profile", "smollm2-135m", "--lens", "tuned:/no/such/lens"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, tmp_path, capsys, monkeypatch) -> None:
    import depthlens.models.loading as loading

    def no_load(*_a, **_k):  # bad input must be refused before any model is loaded
        raise AssertionError("model loaded before validation")

    monkeypatch.setattr(loading, "load_model", no_load)
    assert main([*argv, "-o", str(tmp_path / "out"), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("depthlens: error:") and "\n" not in err


def _tiny_lens(tmp_path):
    tmp_path.mkdir()
    lm = wrap_tiny("llama")
    save_lens(
        TunedLens.for_model(lm),
        tmp_path,
        Envelope(kind="depthlens.tuned_lens", model=lm.identity()),
    )
    return tmp_path


@pytest.mark.e2e
def test_lens_of_another_model_is_refused_by_the_cli(tmp_path, capsys) -> None:
    lens = _tiny_lens(tmp_path / "tiny")
    assert (
        main(
            [
                "exit",
                "smollm2-135m",
                "--lens",
                f"tuned:{lens}",
                "-o",
                str(tmp_path / "exit.json"),
                *SMALL,
            ]
        )
        == 2
    )
    assert "different models" in capsys.readouterr().err
    assert not (tmp_path / "exit.json").exists()


@pytest.mark.e2e
def test_train_eval_report_exit_profile_on_the_real_model(tmp_path) -> None:
    lens = tmp_path / "lens"
    assert (
        main(
            [
                "lens",
                "train",
                "smollm2-135m",
                "--data",
                "wiki-calib",
                "--steps",
                "1",
                "-o",
                str(lens),
                *SMALL,
            ]
        )
        == 0
    )
    meta = json.loads((lens / "lens.json").read_text())
    assert meta["kind"] == "depthlens.tuned_lens" and meta["training"]["steps"] == 1
    assert len(meta["training"]["loss_first_step"]) == meta["model"]["num_layers"]
    kl = tmp_path / "kl.json"
    assert (
        main(
            [
                "lens",
                "eval",
                "smollm2-135m",
                "--lens",
                f"tuned:{lens}",
                "-o",
                str(kl),
                "--lens-kernel",
                "eager",
                *SMALL,
            ]
        )
        == 0
    )
    res = json.loads(kl.read_text())
    assert set(res["lenses"]) == {"logit", "tuned"}
    assert res["lenses"]["tuned"]["lens_kl"][-1] == pytest.approx(0.0, abs=1e-5)
    page = tmp_path / "lens.html"
    assert main(["lens", "report", str(kl), "-o", str(page)]) == 0
    assert "tuned lens" in page.read_text()
    ex = tmp_path / "exit.json"
    assert (
        main(
            [
                "exit",
                "smollm2-135m",
                "--lens",
                f"tuned:{lens}",
                "--confidence",
                "0.9",
                "--entropy",
                "0.5",
                "--settled",
                "3",
                "-o",
                str(ex),
                *SMALL,
            ]
        )
        == 0
    )
    pts = json.loads(ex.read_text())["rules"]
    assert {k: len(v) for k, v in pts.items()} == {"confidence": 1, "entropy": 1, "settled": 1}
    assert 1 <= pts["settled"][0]["mean_exit_depth"] <= 30
    prof = tmp_path / "prof.json"
    assert (
        main(
            [
                "profile",
                "smollm2-135m",
                "--lens",
                f"tuned:{lens}",
                "--lens-tokens",
                "8",
                "--lens-kernel",
                "eager",
                "-o",
                str(prof),
                *SMALL,
            ]
        )
        == 0
    )
    d = json.loads(prof.read_text())
    assert d["summary"]["lens_readout"]["kind"] == "tuned"
    assert d["metrics"]["lens_kl"][-1] == pytest.approx(0.0, abs=1e-5)
