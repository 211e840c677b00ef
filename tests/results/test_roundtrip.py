"""Every JSON a command writes reads back into an equal typed object, per kind.

Each entry of :data:`KINDS` makes one result the way its command does (tiny random models,
tiny data), writes it, and hands back (the object in memory, the file, its class). The
check is the same for all: the file is strict JSON, the class reads it back equal to what
was written, and its ``to_dict`` is the file's content exactly (no key lost or added).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.results import Enveloped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

Made = tuple[Enveloped | None, Path, type[Enveloped]]


def _strict(path: Path) -> dict[str, Any]:
    def refuse(tok: str) -> Any:
        raise AssertionError(f"non-JSON constant {tok} in {path}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _saved(obj: Enveloped, path: Path) -> Made:
    obj.save(path)
    return obj, path, type(obj)


def make_profile(tmp: Path) -> Made:
    from depthlens.profiling import ProfileOptions, profile

    lm, w = wrap_tiny("llama"), random_windows(n=4, seq_len=12, pad_last=3)
    opts = ProfileOptions(lens_kernel="eager", batch_size=2)
    return _saved(profile(lm, w, opts, progress=False), tmp / "profile.json")


def make_skip(tmp: Path) -> Made:
    from depthlens.causal import SkipOptions, skip_sweep

    lm, w = wrap_tiny("llama"), random_windows(n=3, seq_len=10)
    res = skip_sweep(lm, w, SkipOptions(lens_kernel="eager"), progress=False)
    return _saved(res, tmp / "skip.json")


class _Tok:
    """Just enough of a tokenizer for ``think`` on a tiny model."""

    pad_token_id = 0
    eos_token_id = 2

    def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([[1] + [3 + ord(c) % 100 for c in text]])}

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(97 + i % 26) for i in ids)


def make_think(tmp: Path) -> Made:
    from depthlens.causal import ThinkOptions, think

    lm = wrap_tiny("llama")
    lm.tokenizer = _Tok()
    res = think(lm, "depth", ThinkOptions(max_new_tokens=3))
    return _saved(res, tmp / "think.json")


def make_compare(tmp: Path) -> Made:
    from depthlens.evaluate.compare import compare

    lm, w = wrap_tiny("llama"), random_windows(n=3, seq_len=10)
    res = compare([("a", lm), ("b", wrap_tiny("llama"))], w, speed=False, batch_size=2)
    return _saved(res, tmp / "compare.json")


def make_eval(tmp: Path) -> Made:
    """``depthlens eval --mc``: a comparison of one model with multiple-choice scores."""
    import dataclasses

    from depthlens.evaluate.compare import compare

    lm, w = wrap_tiny("llama"), random_windows(n=3, seq_len=10)
    res = compare([("a", lm)], w, speed=False, batch_size=2)
    mc = {"task": {"acc": 0.5, "chance": 0.25, "n_examples": 4}}
    return _saved(dataclasses.replace(res, mc=mc), tmp / "eval.json")


def make_plan(tmp: Path) -> Made:
    from depthlens.cut import CutOptions, plan_cut, save_plan

    lm = wrap_tiny("llama")
    plan = plan_cut(lm, random_windows(n=20, seq_len=16), "replaceme-ls", CutOptions(n=1))
    save_plan(plan, tmp / "plan.json")
    return plan, tmp / "plan.json", type(plan)


def make_pruned(tmp: Path) -> Made:
    from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned
    from depthlens.models.manifest import MANIFEST, CutManifest

    lm = wrap_tiny("llama")
    plan = plan_cut(lm, random_windows(n=20, seq_len=16), "replaceme-ls", CutOptions(n=1))
    apply_cut_(lm, plan)
    save_pruned(lm, plan, tmp / "pruned")
    return None, tmp / "pruned" / MANIFEST, CutManifest


def make_heal(tmp: Path) -> Made:
    import copy

    from depthlens.cut import CutOptions, apply_cut_, plan_cut
    from depthlens.heal import CutSites, HealOptions, heal_

    teacher = wrap_tiny("llama")
    lm = copy.deepcopy(teacher)
    plan = plan_cut(lm, random_windows(n=20, seq_len=16), "replaceme-ls", CutOptions(n=1))
    apply_cut_(lm, plan)
    opts = HealOptions(steps=2, seq_len=16, batch_size=2, eval_every=1)
    held = random_windows(n=2, seq_len=16, seed=5)
    res = heal_(
        lm, teacher, random_windows(n=4, seq_len=16), opts, CutSites.of_plan(plan), evals=held
    )
    return _saved(res, tmp / "heal.json")


def make_repr(tmp: Path) -> Made:
    from depthlens.repr import ReprOptions, analyse_repr

    lm, w = wrap_tiny("llama"), random_windows(n=4, seq_len=12)
    res = analyse_repr(lm, w, ReprOptions(max_samples=30, cka_batch=8))
    return _saved(res, tmp / "repr.json")


def make_similarity(tmp: Path) -> Made:
    from depthlens.repr import ReprOptions, similarity

    lm, w = wrap_tiny("llama"), random_windows(n=4, seq_len=12)
    res = similarity(lm, wrap_tiny("llama"), w, ReprOptions(max_samples=30, cka_batch=8))
    return _saved(res, tmp / "similarity.json")


def make_lens_eval(tmp: Path) -> Made:
    from depthlens.tuned.evaluate import evaluate_lens

    lm, w = wrap_tiny("llama"), random_windows(n=3, seq_len=10)
    res = evaluate_lens(lm, w, "logit", batch_size=2, kernel="eager", progress=False)
    return _saved(res, tmp / "lens_eval.json")


def make_tuned_lens(tmp: Path) -> Made:
    """``depthlens lens train`` with held-out windows: lens.json carries the KL curve."""
    from depthlens.tuned.result import META, TunedLensResult
    from depthlens.tuned.train import TrainOptions, train_and_save

    lm, w = wrap_tiny("llama"), random_windows(n=4, seq_len=12)
    opts = TrainOptions(steps=2, batch_size=2, eval_every=1)
    held = random_windows(n=2, seq_len=12, seed=5)
    res = train_and_save(lm, w, tmp / "lens", opts, progress=False, heldout=held)
    assert res.training.heldout_kl is not None
    return res, tmp / "lens" / META, TunedLensResult


def make_exit(tmp: Path) -> Made:
    from depthlens.exit.api import run_exit

    lm, w = wrap_tiny("llama"), random_windows(n=3, seq_len=10)
    sweeps = {"confidence": (0.5, 0.9), "settled": (2.0,)}
    res = run_exit(lm, w, "logit", sweeps, batch_size=2, progress=False)
    return _saved(res, tmp / "exit.json")


def make_train(tmp: Path) -> Made:
    from train_helpers import tiny_args, write_text

    from depthlens.cli.main import main
    from depthlens.train.result import TrainResult

    text = write_text(tmp / "t.txt")
    assert main(tiny_args(text, tmp / "run", steps=2)) == 0
    return None, tmp / "run" / "train.json", TrainResult


def make_study(tmp: Path) -> Made:
    from train_helpers import eval_text, write_text

    from depthlens.cli.main import main
    from depthlens.train.result import StudyResult

    text = write_text(tmp / "t.txt")
    tiny = "--width 16 --heads 2 --context 16 --batch-size 4 --tokens 128 --vocab-size 300"
    argv = ["study", "depth", "--depths", "1", "--schemes", "pre-ln", *tiny.split()]
    argv += ["--warmup", "1", "--data", str(text), "--eval-data", str(eval_text(text))]
    argv += ["--measure-tokens", "64", "--device", "cpu", "-o", str(tmp / "study"), "--quiet"]
    assert main(argv) == 0
    return None, tmp / "study" / "study.json", StudyResult


#: (kind, how to make and write one). A command that writes a new kind adds a line here.
KINDS: list[tuple[str, Callable[[Path], Made]]] = [
    ("profile", make_profile),
    ("skip", make_skip),
    ("think", make_think),
    ("compare", make_compare),
    ("compare", make_eval),
    ("cut_plan", make_plan),
    ("pruned", make_pruned),
    ("heal", make_heal),
    ("repr", make_repr),
    ("similarity", make_similarity),
    ("lens_eval", make_lens_eval),
    ("tuned_lens", make_tuned_lens),
    ("exit", make_exit),
    ("train", make_train),
    ("study", make_study),
]


def _read(cls: type[Enveloped], path: Path) -> Enveloped:
    if cls.KIND == "depthlens.cut_plan":
        from depthlens.cut import load_plan  # the plan's transform lives beside the JSON

        return load_plan(path)
    return cls.load(path)


@pytest.mark.parametrize("kind, make", KINDS, ids=[k for k, _ in KINDS])
def test_written_json_reads_back_equal(kind: str, make: Callable[[Path], Made], tmp_path: Path):
    obj, path, cls = make(tmp_path)
    raw = _strict(path)
    assert raw["kind"] == cls.KIND == f"depthlens.{kind}"
    back = _read(cls, path)
    assert isinstance(back, cls)
    if obj is not None:
        assert back == obj  # what the command holds is what it wrote
    # nothing lost, nothing added (a plan's file also points at its transform's sidecar)
    assert back.to_dict() == {k: v for k, v in raw.items() if k != "transforms"}
    assert cls.from_dict(raw) == back


def test_the_kinds_list_covers_every_enveloped_class() -> None:
    """A new Enveloped result without a roundtrip entry fails here."""
    import importlib
    import pkgutil

    import depthlens

    for mod in pkgutil.walk_packages(depthlens.__path__, "depthlens."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    seen = {c.KIND for c in _subclasses(Enveloped) if hasattr(c, "KIND")}
    listed = {f"depthlens.{k}" for k, _ in KINDS}
    # Written by other commands' helpers, each tested beside its own code.
    # round-tripped in tests/speculate (they need a decoding run to be made)
    elsewhere = {"depthlens.speculative", "depthlens.speculate", "depthlens.draft_choice"}
    assert seen - elsewhere <= listed, sorted(seen - elsewhere - listed)


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out
