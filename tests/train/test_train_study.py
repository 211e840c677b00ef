"""A tiny study end to end, and the other commands on trained lab checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import eval_text, tiny_args, write_text

from depthlens.cli.main import main
from depthlens.results import read_result


def test_tiny_study_end_to_end(tmp_path: Path) -> None:
    text = write_text(tmp_path / "t.txt")
    out = tmp_path / "study"
    rc = main(
        [
            "study",
            "depth",
            "--depths",
            "1,2",
            "--schemes",
            "pre-ln,deepnorm",
            "--width",
            "16",
            "--heads",
            "2",
            "--context",
            "16",
            "--batch-size",
            "4",
            "--tokens",
            "256",
            "--vocab-size",
            "300",
            "--warmup",
            "1",
            "--data",
            str(text),
            "--eval-data",
            str(eval_text(text)),
            "--measure-tokens",
            "128",
            "--jobs",
            "1",
            "--seeds",
            "2",
            "--device",
            "cpu",
            "-o",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    env, payload = read_result(out / "study.json", "study")
    assert env.options["depths"] == [1, 2] and env.tokens["trained_per_run"] == 256
    assert env.options["seeds"] == [0, 1] and len(payload["runs"]) == 2 * 2 * 2
    by_seed = {(r["scheme"], r["depth"], r["seed"]): r for r in payload["runs"]}
    # the seeds train different models; the summary is their mean with an interval around it
    assert by_seed[("pre-ln", 2, 0)]["eval_loss"] != by_seed[("pre-ln", 2, 1)]["eval_loss"]
    summ = {(e["scheme"], e["depth"]): e for e in payload["summary"]}
    loss = summ[("pre-ln", 2)]["eval_loss"]
    pair = [by_seed[("pre-ln", 2, s)]["eval_loss"] for s in (0, 1)]
    assert loss["n"] == 2 and loss["mean"] == pytest.approx(sum(pair) / 2)
    assert loss["lo"] < loss["mean"] < loss["hi"]
    assert {d["b"] for d in payload["differences"]} == {"deepnorm"}
    runs = {(r["scheme"], r["depth"]): r for r in payload["runs"] if r["seed"] == 0}
    assert set(runs) == {("pre-ln", 1), ("pre-ln", 2), ("deepnorm", 1), ("deepnorm", 2)}
    for (scheme, depth), r in runs.items():
        assert len(r["removal_cost"]) == depth
        assert len(r["resid_rms"]) == depth + 1 and len(r["rel_contrib_block"]) == depth
        if depth == 1:  # a 1-block model cannot lose its only block
            assert r["removal_cost"] == [None] and r["unused_depth"] is None
            continue
        rel = [c / r["eval_loss"] for c in r["removal_cost"]]
        assert r["removal_cost_rel"] == pytest.approx(rel)
        assert r["unused_depth"] == sum(x < 0.01 for x in rel) / depth
        trained = json.loads((out / r["run"] / "train.json").read_text())
        assert r["eval_loss"] > 0 and trained["options"]["scheme"] == scheme
    assert runs[("deepnorm", 2)]["saved_as"] == "LabForCausalLM"
    html = (out / "report.html").read_text()
    assert html.count('<figure class="plot"') == 2 + 2  # loss, RMS, one heatmap per scheme
    assert "<script>alert" not in html and "deepnorm" in html and "95% interval" in html
    # rerunning without --overwrite refuses; nothing retrained
    assert main(["study", "depth", "--depths", "1,2", "-o", str(out), "--quiet"]) == 2


@pytest.mark.parametrize("scheme", ["lns", "post-ln"])
def test_profile_prune_skip_report_on_trained_checkpoint(tmp_path: Path, scheme: str) -> None:
    text = write_text(tmp_path / "t.txt")
    model = tmp_path / "m"
    assert main(tiny_args(text, model, 6, **{"--depth": 3, "--scheme": scheme})) == 0
    common = ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]
    prof = tmp_path / "profile.json"
    assert main(["profile", str(model), *common, "--lens-kernel", "eager", "-o", str(prof)]) == 0
    p = json.loads(prof.read_text())
    assert len(p["metrics"]["rel_contrib_block"]) == 3
    skip = tmp_path / "skip.json"
    # post-norm sublayer modules output the whole stream: only whole-block skips apply
    sub = ["--sublayers", "none"] if scheme == "post-ln" else []
    assert main(["skip", str(model), *common, *sub, "--lens-kernel", "eager", "-o", str(skip)]) == 0
    pruned = tmp_path / "pruned"
    assert (
        main(["prune", str(model), *common, "--method", "last", "--remove", "1", "-o", str(pruned)])
        == 0
    )
    cfg = json.loads((pruned / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2
    html = tmp_path / "r.html"
    assert main(["report", str(prof), str(skip), "-o", str(html), "--quiet"]) == 0
    assert html.read_text().count('<figure class="plot"') >= 3
