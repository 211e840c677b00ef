"""End to end on the packaged models: MobileNetV2, all-MiniLM-L6-v2, SmolLM2 (small caps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from depthlens.cli.main import main
from depthlens.data.labelled import labelled_available

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(
    not labelled_available("fashion-mnist"),
    reason="Fashion-MNIST absent: run scripts/setup-datasets.sh (scripts/test.sh does as root)",
)
def test_mobilenet_on_fashion_mnist_writes_probes_ood_and_collapse(tmp_path: Path) -> None:
    out, page = tmp_path / "m.json", tmp_path / "m.html"
    assert (
        main(
            [
                "repr",
                "mobilenet-v2",
                "--data",
                "fashion-mnist",
                "--image-size",
                "64",
                "--max-samples",
                "60",
                "--test-samples",
                "30",
                "--corruptions",
                "noise,rotate",
                "--seed",
                "5",
                "-o",
                str(out),
                "--html",
                str(page),
                "--quiet",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    m = d["metrics"]
    assert d["kind"] == "depthlens.repr" and d["mode"] == "labelled"
    assert len(d["layers"]) == 19 == len(m["probe_acc"]) == len(m["nc1"])
    assert set(m["probe_acc_ood"]) == {"noise", "rotate", "mean"}
    assert d["options"]["seed"] == 5 and d["options"]["image_size"] == 64
    assert d["samples"]["train"]["n"] == 60 and d["samples"]["ood"]["noise"]["seed"] == 6
    assert max(m["probe_acc"]) > 0.3  # 10 classes: chance is 0.1
    assert all(v >= 0 for v in m["nc1"])
    html = page.read_text()
    assert 'id="plot-probe"' in html and 'id="plot-cka"' in html and 'id="plot-nc1"' in html


def test_minilm_separates_wiki_from_news(tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    assert (
        main(
            [
                "repr",
                "all-minilm-l6-v2",
                "--data",
                "text-domain",
                "--max-samples",
                "80",
                "--test-samples",
                "40",
                "--corruptions",
                "lower-nopunct",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert d["model"]["class"] == "BertModel" and len(d["layers"]) == 7
    assert max(d["metrics"]["probe_acc"]) >= 0.7  # balanced classes: chance is 0.5


def test_smollm2_token_mode_and_similarity_to_a_cut_copy(tmp_path: Path) -> None:
    from depthlens.cut import remove_blocks_
    from depthlens.data import load_text, make_windows
    from depthlens.repr import ReprOptions, load_repr_model, similarity

    out = tmp_path / "t.json"
    assert (
        main(
            [
                "repr",
                "smollm2-135m",
                "--data",
                "wiki-eval",
                "--max-tokens",
                "256",
                "--seq-len",
                "128",
                "--max-samples",
                "100",
                "--cka-batch",
                "64",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert len(d["metrics"]["anisotropy"]) == 31 and d["samples"]["geometry"]["n"] == 100
    assert all(abs(d["metrics"]["cka"][l][l] - 1) < 1e-6 for l in range(31))
    a, b = load_repr_model("smollm2-135m"), load_repr_model("smollm2-135m")
    remove_blocks_(b, (20, 21))
    w = make_windows(load_text("wiki-eval"), a.tokenizer, seq_len=128, max_tokens=256)
    cka = torch.tensor(
        similarity(a, b, w, ReprOptions(max_samples=50, cka_batch=64)).metrics["cka"]
    )
    assert cka.shape == (31, 29)
    for l in range(21):  # identical computation up to the removed blocks
        assert float(cka[l, l]) == pytest.approx(1.0, abs=1e-6)
    assert 20 <= int(cka[:, 21].argmax()) <= 24  # after the cut: closest to its old depth
