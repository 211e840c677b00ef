"""``depthlens heal`` as one call: checks, load, stream, heal, save (atomically).

Everything that can be refused is refused before the models load: the options, the output
path, the device, a checkpoint that was never cut, held-out text that overlaps the healing
text. After loading: a teacher that is not the model the cut was made from, and a family
that cannot be healed. The output folder appears only when complete; an interrupted run
keeps its resumable state beside it (``.<name>.heal-state``) and the same command resumes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.heal.loop import heal_
from depthlens.heal.options import HealOptions
from depthlens.heal.result import HealResult
from depthlens.heal.state import drop_state, state_dir_for
from depthlens.heal.targets import CutSites, check_healable
from depthlens.models.loading import LoadedModel
from depthlens.models.manifest import CutManifest, load_manifest


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any work."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DepthlensError(
            f"--device {device!r} is not a device (cpu, cuda, cuda:1, mps)"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DepthlensError(f"--device {device}: this machine has no CUDA GPU; pass --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DepthlensError(f"--device {device}: MPS is not available here; pass --device cpu")


def cut_manifest_of(ref: str) -> CutManifest:
    """The manifest of the cut checkpoint ``ref``; refuse one that was never cut."""
    path = Path(ref).expanduser()
    man = load_manifest(path) if path.is_dir() else None
    if man is None:
        raise DepthlensError(
            f"{ref} was never cut (no depthlens.json with a cut record): heal restores a "
            "checkpoint written by `depthlens prune`; cut it first"
        )
    return man


def check_teacher(man: CutManifest, teacher: LoadedModel) -> None:
    """Refuse a teacher that is not the model the cut was made from (by fingerprint)."""
    from depthlens.results import check_same_model, model_fingerprint

    got, base = teacher.identity(), man.base_model
    try:
        check_same_model(base, got, "the teacher and the cut's base model")
    except DepthlensError:
        raise DepthlensError(
            f"the teacher {teacher.ref!r} is not the model the cut was made from "
            f"({base.get('ref')!r}, {base.get('num_layers')} blocks; fingerprints "
            f"{model_fingerprint(got)} vs {model_fingerprint(base)}), so distilling it would "
            f"teach the cut another network; heal with --teacher {base.get('ref')}"
        ) from None


def save_healed(
    lm: LoadedModel, man: CutManifest, result: HealResult, out: Path, overwrite: bool
) -> Path:
    """Write the healed model as an ordinary checkpoint; its manifest gains ``healing``."""
    from depthlens.io import atomic_dir
    from depthlens.models.loading import quiet_transformers
    from depthlens.models.manifest import MANIFEST

    env = dataclasses.replace(
        man.envelope,
        model=lm.identity(),
        options={**man.options, "heal": result.options},
        tokens={**man.tokens, "heal": result.healing_tokens},
    )
    healed = dataclasses.replace(man, envelope=env, healing=result.to_dict())
    model: Any = lm.model
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(tmp)
        healed.save(tmp / MANIFEST)
    return out


def heal_checkpoint(
    pruned: str,
    teacher: str,
    *,
    opts: HealOptions,
    out: str | Path,
    data: str = "wiki-calib",
    eval_data: str | None = None,
    eval_tokens: int = 4096,
    dtype: str = "float32",
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
    load: Any = None,
) -> HealResult:
    """Heal the cut checkpoint ``pruned`` towards ``teacher``; write it to ``out``."""
    from depthlens.data import check_disjoint, load_text, make_windows
    from depthlens.heal.stream import TextStream
    from depthlens.io import check_output_path
    from depthlens.models import load_model

    opts.validate()
    if opts.patience and not eval_data:
        raise DepthlensError("--patience stops on the held-out curve: pass --eval-data")
    dst = check_output_path(out, overwrite)
    check_device(device)
    man = cut_manifest_of(pruned)
    train_src = load_text(data)
    eval_src = load_text(eval_data) if eval_data else None
    if eval_src is not None:
        check_disjoint(train_src, eval_src)
    loader = load or (lambda ref: load_model(ref, dtype=dtype, device=device))
    student = loader(pruned)
    check_healable(student, opts.train)
    ref = loader(teacher)
    check_teacher(man, ref)
    stream = TextStream(train_src, student.tokenizer, opts.seq_len, opts.seed)
    evals = None
    if eval_src is not None:
        evals = make_windows(
            eval_src, student.tokenizer, seq_len=opts.seq_len, max_tokens=eval_tokens
        )
    state = state_dir_for(dst)
    if overwrite:
        drop_state(state)
    result = heal_(
        student,
        ref,
        stream,
        opts,
        CutSites.of(man),
        evals=evals,
        state_dir=state,
        progress=progress,
    )
    save_healed(student, man, result, dst, overwrite)
    drop_state(state)
    return result
