"""The healing loop: the curve, early stopping, and a resume that ends where a whole run does."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import random_windows
from fixtures_saved import Killed
from heal_helpers import cut_pair, state_dict_copy

import depthlens.heal.loop as loop
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.heal import HealOptions, HealResult, heal_

TRAIN = random_windows(n=12, seq_len=16, seed=0)
HELD = random_windows(n=4, seq_len=16, seed=7)


def _opts(**kw):
    base = dict(steps=8, seq_len=16, batch_size=2, lr=5e-3, eval_every=2, train="blocks")
    return HealOptions(**{**base, **kw})


def test_curve_has_a_point_per_evaluation_and_ends_at_the_healed_model():
    teacher, student, sites, _ = cut_pair("llama")
    res = heal_(student, teacher, TRAIN, _opts(), sites, evals=HELD)
    assert [p["step"] for p in res.curve] == [0, 2, 4, 6, 8]
    assert [p["tokens"] for p in res.curve] == [0, 64, 128, 192, 256]
    assert res.stopped == "budget" and res.steps == 8 and res.healing_tokens == 256
    # the kept weights are the best point's, and the curve's number is their perplexity
    direct = evaluate_perplexity(student, HELD)["ppl"]
    assert res.best is not None and res.best["ppl"] == pytest.approx(direct, rel=1e-5)
    assert res.best["nll"] == min(p["nll"] for p in res.curve)
    assert res.curve[0]["ppl"] == pytest.approx(math.exp(res.curve[0]["nll"]))


def test_early_stopping_stops_when_the_curve_is_flat():
    teacher, student, sites, _ = cut_pair("llama")
    # a required gain of 10 nats is never met: two flat points after the first, then stop
    res = heal_(student, teacher, TRAIN, _opts(patience=2, min_delta=10.0), sites, evals=HELD)
    assert res.stopped == "early" and res.steps == 4 and len(res.curve) == 3
    assert res.best is not None and res.best["nll"] == min(p["nll"] for p in res.curve)


def test_early_stopping_keeps_the_best_points_weights(monkeypatch):
    teacher, student, sites, _ = cut_pair("llama")
    script = iter([5.0, 4.0, 4.5, 4.6])  # held-out NLL at steps 0, 2, 4, 6: best at 2
    monkeypatch.setattr(loop, "held_out_nll", lambda *a, **k: next(script))
    snaps, last = [], []
    real_snap, real_load = loop.trainable_state, loop.load_trainable_
    monkeypatch.setattr(loop, "trainable_state", lambda m: snaps.append(real_snap(m)) or snaps[-1])

    def load(model, params):
        last.append(real_snap(model))
        real_load(model, params)

    monkeypatch.setattr(loop, "load_trainable_", load)
    res = heal_(student, teacher, TRAIN, _opts(train="maps", patience=2), sites, evals=HELD)
    assert res.stopped == "early" and res.steps == 6 and res.best == res.curve[1]
    w = student.model.get_submodule("model.layers.0.mlp.down_proj").weight
    (name,) = snaps[1]
    assert torch.equal(w, snaps[1][name]) and not torch.equal(w, last[0][name])


def test_result_round_trips_through_json(tmp_path):
    teacher, student, sites, _ = cut_pair("llama")
    res = heal_(student, teacher, TRAIN, _opts(steps=2), sites, evals=HELD)
    assert HealResult.from_dict(res.to_dict()) == res
    res.save(tmp_path / "heal.json")
    back = HealResult.load(tmp_path / "heal.json")
    assert back == res and back.tokens_to_fraction(0.9) == res.tokens_to_fraction(0.9)


def test_resume_after_a_kill_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    teacher, student, sites, _ = cut_pair("llama")
    twin = copy.deepcopy(student)
    whole = heal_(student, teacher, TRAIN, _opts(), sites, evals=HELD)

    real_save, saves = loop.save_state, []

    def save_then_die(*a, **kw):
        real_save(*a, **kw)
        saves.append(1)
        if len(saves) == 2:  # state at step 4 is on disk, then the process dies
            raise Killed

    monkeypatch.setattr(loop, "save_state", save_then_die)
    state = tmp_path / "state"
    with pytest.raises(Killed):
        heal_(copy.deepcopy(twin), teacher, TRAIN, _opts(), sites, evals=HELD, state_dir=state)
    monkeypatch.setattr(loop, "save_state", real_save)
    res = heal_(twin, teacher, TRAIN, _opts(), sites, evals=HELD, state_dir=state)
    assert res.resumed_from == [4] and res.curve == whole.curve
    a, b = state_dict_copy(student.model), state_dict_copy(twin.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_state_of_other_settings_is_refused(tmp_path):
    from depthlens.errors import DepthlensError

    teacher, student, sites, _ = cut_pair("llama")
    state = tmp_path / "state"
    heal_(copy.deepcopy(student), teacher, TRAIN, _opts(steps=2), sites, state_dir=state)
    with pytest.raises(DepthlensError, match="other settings"):
        heal_(student, teacher, TRAIN, _opts(steps=2, lr=1e-3), sites, state_dir=state)
