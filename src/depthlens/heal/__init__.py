"""Healing after a cut: short distillation towards the original model (``depthlens heal``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depthlens.heal.distill import HealOptions, check_options, heal_

__all__ = ["HealOptions", "check_options", "heal_", "heal_checkpoint", "save_healed"]


def save_healed(
    lm: Any,
    record: dict[str, Any],
    manifest: dict[str, Any] | None,
    out: str | Path,
    overwrite: bool = False,
) -> Path:
    """Write the healed model as an ordinary checkpoint; ``depthlens.json`` gains "healing"."""
    from depthlens.io import atomic_dir, check_output_path
    from depthlens.models.loading import quiet_transformers
    from depthlens.models.manifest import MANIFEST, MANIFEST_KIND
    from depthlens.results import ENVELOPE_KEYS, Envelope, write_result

    dst = check_output_path(out, overwrite)
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        with quiet_transformers():
            lm.model.save_pretrained(tmp, safe_serialization=True)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(tmp)
        man = dict(manifest or {})
        payload = {k: v for k, v in man.items() if k not in ENVELOPE_KEYS}
        payload["healing"] = json.loads(json.dumps(record, default=str))
        env = Envelope(
            kind=MANIFEST_KIND,
            model=lm.identity(),
            data=man.get("data") or {},
            options={**(man.get("options") or {}), "heal": record["options"]},
            tokens={**(man.get("tokens") or {}), "heal": record["tokens"]},
        )
        write_result(tmp / MANIFEST, env, payload)
    return dst


def heal_checkpoint(
    pruned: str,
    teacher: str,
    *,
    opts: HealOptions,
    out: str | Path,
    data: str = "wiki-calib",
    max_tokens: int = 8192,
    seq_len: int = 512,
    eval_data: str | None = None,
    eval_tokens: int = 4096,
    overwrite: bool = False,
    progress: bool = False,
    load: Any = None,
) -> dict[str, Any]:
    """Load ``pruned`` and ``teacher``, heal, evaluate before/after, save to ``out``."""
    from depthlens.data import check_disjoint, load_text, make_windows
    from depthlens.evaluate.perplexity import evaluate_perplexity
    from depthlens.io import check_output_path
    from depthlens.models import load_model
    from depthlens.models.manifest import read_manifest

    check_options(opts)
    check_output_path(out, overwrite)
    calib_src = load_text(data)
    eval_src = load_text(eval_data) if eval_data else None
    if eval_src is not None:
        check_disjoint(calib_src, eval_src)
    loader = load or load_model
    student, ref = loader(pruned), loader(teacher)
    from depthlens.heal.distill import check_same_tokenizer

    check_same_tokenizer(student, ref)
    windows = make_windows(calib_src, student.tokenizer, seq_len=seq_len, max_tokens=max_tokens)
    ev = (
        make_windows(eval_src, student.tokenizer, seq_len=seq_len, max_tokens=eval_tokens)
        if eval_src is not None
        else None
    )
    before = evaluate_perplexity(student, ev) if ev is not None else None
    manifest = read_manifest(student.path) if student.path else None
    record = heal_(student, ref, windows, opts, manifest=manifest, progress=progress)
    record.update(teacher=ref.ref, data=windows.identity, calibration_tokens=windows.n_tokens)
    if ev is not None and before is not None:
        after = evaluate_perplexity(student, ev)
        record["eval"] = {
            "data": eval_data,
            "n_tokens": after["n_tokens"],
            "ppl_before": before["ppl"],
            "ppl_after": after["ppl"],
        }
    record["path"] = str(save_healed(student, record, manifest, out, overwrite))
    return record
