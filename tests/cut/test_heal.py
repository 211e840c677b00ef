"""Healing a tiny cut Llama: the KL to the teacher falls, LoRA is merged back, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_windows, wrap_tiny
from test_cut_multi import llama6

from depthlens.cli.main import main
from depthlens.cut import CutOptions, apply_cut_, plan_cut
from depthlens.errors import DepthlensError
from depthlens.heal import HealOptions, heal_
from depthlens.heal.distill import cut_points


def _kl(student, teacher, w):
    """Naive mean KL(p_teacher ‖ p_student) over every real token of ``w``."""
    with torch.no_grad():
        a = teacher.model(input_ids=w.input_ids, attention_mask=w.attention_mask).logits
        b = student.model(input_ids=w.input_ids, attention_mask=w.attention_mask).logits
    keep = w.attention_mask.bool()
    p, q = torch.log_softmax(a[keep], -1), torch.log_softmax(b[keep], -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def _cut_pair():
    teacher = llama6()
    student = copy.deepcopy(teacher)
    w = random_windows(n=10, seq_len=16)
    plan = plan_cut(student, w, "replaceme-multi", CutOptions(blocks=(2, 4)))
    apply_cut_(student, plan)
    manifest = {"removed": [2, 4], "num_layers_original": 6, "plan": plan.to_dict()}
    return teacher, student, w, manifest


@pytest.mark.parametrize("train, mse", [("both", 0.0), ("merged", 0.5)])
def test_heal_lowers_kl_and_merges_back(train, mse):
    teacher, student, w, manifest = _cut_pair()
    cls = type(student.model)
    before = _kl(student, teacher, w)
    opts = HealOptions(steps=12, lr=5e-3, train=train, mse_weight=mse, batch_size=4)
    rec = heal_(student, teacher, w, opts, manifest=manifest)
    after = _kl(student, teacher, w)
    assert after < 0.9 * before, (before, after)
    assert type(student.model) is cls  # an ordinary model again, LoRA folded in
    assert not any("lora" in k for k in student.model.state_dict())
    assert rec["tokens"] == 12 * 4 * 16 and rec["cut_points"] == [(1, 3), (2, 5)]
    assert not any(p.requires_grad for p in student.model.parameters())


def test_cut_points_map_merge_blocks_to_stream_indices():
    man = {
        "removed": [3, 4, 7],
        "num_layers_original": 10,
        "plan": {"merge_blocks": [2, 6], "merge_into": None},
    }
    # kept: 0 1 2 5 6 8 9 -> block 2 is kept index 2, its run ends at h_5; 6 -> 4, h_8
    assert cut_points(man, 7) == [(2, 5), (4, 8)]


def test_heal_refuses_a_teacher_with_another_vocabulary():
    _teacher, student, w, manifest = _cut_pair()
    other = wrap_tiny("qwen2")
    other.model.resize_token_embeddings(200)
    with pytest.raises(DepthlensError, match="different tokenizer"):
        heal_(student, other, w, HealOptions(steps=1), manifest=manifest)


def test_cli_heal_zero_steps_writes_nothing(tmp_path, capsys):
    out = tmp_path / "healed"
    code = main(
        ["heal", str(tmp_path), "--teacher", "smollm2-135m", "--steps", "0", "-o", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--steps must be at least 1" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_heal_writes_an_ordinary_checkpoint(tmp_path, capsys):
    import json

    from tiny_checkpoints import TEXT, tiny_pruned
    from transformers import AutoModelForCausalLM

    pruned, _ids, teacher = tiny_pruned(tmp_path, keep_teacher=True)
    calib, held = tmp_path / "calib.txt", tmp_path / "held.txt"
    calib.write_text(" ".join(TEXT * 3))
    held.write_text(" ".join(reversed(TEXT)) + " the end")
    out = tmp_path / "healed"
    code = main(
        [
            "heal",
            str(pruned),
            "--teacher",
            str(teacher),
            "--data",
            str(calib),
            "--steps",
            "2",
            "--max-tokens",
            "512",
            "--seq-len",
            "32",
            "--eval-data",
            str(held),
            "--eval-tokens",
            "256",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "after healing" in text and "2 steps" in text
    man = json.loads((out / "depthlens.json").read_text())
    assert man["healing"]["options"]["steps"] == 2 and man["removed"] == [2, 4]
    m = AutoModelForCausalLM.from_pretrained(out)
    assert type(m).__name__ == "LlamaForCausalLM" and m.config.num_hidden_layers == 4
