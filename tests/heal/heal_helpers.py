"""Tiny cut models to heal: a teacher, its cut copy and the cut's sites, for any family."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from conftest import random_windows
from fixtures_saved import tiny_tokenizer
from tiny_models import tiny_model

from depthlens.arch.spec import resolve_arch
from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned
from depthlens.heal import CutSites
from depthlens.models.loading import LoadedModel

#: Families whose tiny model is not a causal LM: healing must refuse them with a reason.
REFUSED = ("bert", "bert_mlm", "roberta")


def teacher_of(family: str = "llama") -> LoadedModel:
    """A tiny random model of ``family`` with the tiny word tokenizer."""
    model = tiny_model(family)
    return LoadedModel(
        model, tiny_tokenizer(), resolve_arch(model), ref=f"tiny-{family}", source="test"
    )


def cut_pair(family: str = "llama") -> tuple[LoadedModel, LoadedModel, CutSites, object]:
    """(teacher, cut student, sites, plan): block 1 removed, with a map where one fits."""
    teacher = teacher_of(family)
    student = copy.deepcopy(teacher)
    w = random_windows(n=6, seq_len=16)
    method = "replaceme-multi" if student.arch.mlp_out_proj is not None else "block-influence"
    opts = CutOptions(blocks=(1,)) if method == "replaceme-multi" else CutOptions(n=1)
    plan = plan_cut(student, w, method, opts)
    apply_cut_(student, plan)
    return teacher, student, CutSites.of_plan(plan), plan


def saved_cut(tmp: Path, family: str = "llama") -> tuple[Path, Path]:
    """A cut checkpoint and its teacher on disk, cut as `prune` does: (pruned, teacher)."""
    from fixtures_saved import save_tiny

    from depthlens.models import load_model

    tdir = save_tiny(tmp / "teacher", family)
    student = load_model(str(tdir))
    w = random_windows(n=6, seq_len=16)
    plan = plan_cut(student, w, "replaceme-multi", CutOptions(blocks=(1,)))
    apply_cut_(student, plan)
    return save_pruned(student, plan, tmp / "pruned"), tdir


def state_dict_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of every tensor of ``model``."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
