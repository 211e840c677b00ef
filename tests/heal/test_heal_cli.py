"""``depthlens heal``: an ordinary checkpoint with its curve, or one line and nothing written."""

from __future__ import annotations

import json

import pytest
from fixtures_saved import save_tiny, write_text
from heal_helpers import saved_cut

from depthlens.cli.main import main
from depthlens.heal import HealResult
from depthlens.models.manifest import load_manifest


@pytest.fixture
def cut_dirs(tmp_path):
    pruned, teacher = saved_cut(tmp_path)
    write_text(tmp_path / "train.txt", 3000, seed=1)
    write_text(tmp_path / "held.txt", 600, seed=2)
    return tmp_path, pruned, teacher


def _argv(tmp, pruned, teacher, *extra):
    return [
        "heal",
        str(pruned),
        "--teacher",
        str(teacher),
        "--data",
        str(tmp / "train.txt"),
        "--eval-data",
        str(tmp / "held.txt"),
        "--tokens",
        "256",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--eval-every",
        "2",
        "--eval-tokens",
        "128",
        "--quiet",
        "-o",
        str(tmp / "healed"),
        *extra,
    ]


def test_heal_writes_an_ordinary_checkpoint_with_its_curve(cut_dirs, capsys):
    from transformers import AutoModelForCausalLM

    tmp, pruned, teacher = cut_dirs
    assert main(_argv(tmp, pruned, teacher)) == 0
    out = capsys.readouterr().out
    assert "held-out ppl" in out and "after healing" in out and "8 steps" in out
    raw = json.loads((tmp / "healed" / "depthlens.json").read_text())
    assert [p["tokens"] for p in raw["healing"]["curve"]] == [0, 64, 128, 192, 256]
    man = load_manifest(tmp / "healed")
    assert man is not None and man.removed == [1] and man.healing is not None
    res = HealResult.of_checkpoint(tmp / "healed")
    assert res.train == "lora" and res.steps == 8 and res.stopped == "budget"
    m = AutoModelForCausalLM.from_pretrained(tmp / "healed")
    assert type(m).__name__ == "LlamaForCausalLM" and m.config.num_hidden_layers == 3
    assert not any("lora" in k for k in m.state_dict())
    assert not list(tmp.glob(".healed*"))  # no state or temporary folder left behind


def _refused(capsys, code, tmp, *words):
    err = capsys.readouterr().err.strip()
    err = "\n".join(ln for ln in err.splitlines() if "Writing model shards" not in ln)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert not (tmp / "healed").exists() and not list(tmp.glob(".healed*"))


def test_a_teacher_that_is_not_the_cuts_base_model_is_refused(cut_dirs, capsys):
    tmp, pruned, _ = cut_dirs
    other = save_tiny(tmp / "other", "qwen2")
    capsys.readouterr()
    _refused(capsys, main(_argv(tmp, pruned, other)), tmp, "not the model the cut", "--teacher")
    # the cut model as its own teacher: the most likely slip
    _refused(capsys, main(_argv(tmp, pruned, pruned)), tmp, "not the model the cut")


def test_a_checkpoint_that_was_never_cut_is_refused(cut_dirs, capsys):
    tmp, _, teacher = cut_dirs
    _refused(capsys, main(_argv(tmp, teacher, teacher)), tmp, "never cut")


def test_zero_steps_and_a_missing_gpu_are_refused_before_loading(cut_dirs, capsys):
    tmp, pruned, teacher = cut_dirs
    _refused(capsys, main(_argv(tmp, pruned, teacher, "--steps", "0")), tmp, "--steps")
    if not __import__("torch").cuda.is_available():
        code = main(_argv(tmp, pruned, teacher, "--device", "cuda"))
        _refused(capsys, code, tmp, "no CUDA")


def test_overlapping_held_out_text_is_refused(cut_dirs, capsys):
    tmp, pruned, teacher = cut_dirs
    argv = _argv(tmp, pruned, teacher)
    argv[argv.index("--eval-data") + 1] = str(tmp / "train.txt")
    _refused(capsys, main(argv), tmp, "share")
