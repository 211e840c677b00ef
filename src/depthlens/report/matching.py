"""A report draws every result on the profile's model: refuse results of another model.

A plan of a 40-block model drawn on a 30-block profile marks blocks that do not exist; a
comparison of another checkpoint puts someone else's perplexity next to this model's
plots. Where both sides carry a full identity (the result envelope), the fingerprint of
:func:`depthlens.results.check_same_model` decides; older results without one are held to
the fields they have (class, model type, depth, width) and to block indices in range.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.profiling.result import Profile
from depthlens.results import check_same_model

_KEYS = ("class", "model_type", "num_layers", "hidden_size")
# A pruned model's manifest describes the cut model; its removed blocks index the original.
_PRUNED = "depthlens.pruned"


def check_not_input(out: str | Path, inputs: Sequence[str | Path]) -> None:
    """The report must not be written over one of the files it reads."""
    target = os.path.realpath(out)
    for p in inputs:
        if os.path.realpath(p) == target:
            raise DepthlensError(
                f"-o {out} is one of the inputs ({p}); write the report to another path"
            )


def _full(identity: dict[str, Any]) -> bool:
    return all(identity.get(k) is not None for k in ("config", "n_params", "num_layers"))


def _check_identity(prof: dict[str, Any], other: dict[str, Any], what: str) -> None:
    if _full(prof) and _full(other):
        check_same_model(prof, other, what)
        return
    for key in _KEYS:
        a, b = prof.get(key), other.get(key)
        if a is not None and b is not None and a != b:
            raise DepthlensError(
                f"{what} describe different models ({key} {a!r} vs {b!r}); use results "
                "of the profiled model"
            )


def _check_blocks(n_layers: int, removed: Any, name: str) -> None:
    bad = [i for i in removed or [] if isinstance(i, int) and not 0 <= i < n_layers]
    if bad:
        raise DepthlensError(
            f"{name} removes blocks {bad} but the profiled model has {n_layers} blocks "
            f"(0 to {n_layers - 1}); it is a result of another model"
        )


def check_result_model(profile: Profile, obj: Any, name: str) -> None:
    """Refuse ``obj`` (a parsed result) when it describes another model than ``profile``."""
    if not isinstance(obj, dict):
        return  # bare lists (bench rows) carry no model; nothing to check
    n = profile.n_layers
    prof_id = dict(profile.model) if isinstance(profile.model, dict) else {}
    what = f"the profile and {name}"
    kind = obj.get("kind")
    model = obj.get("model") if isinstance(obj.get("model"), dict) else None
    if kind == _PRUNED:  # the manifest's own model is the cut one; compare the original
        depth = obj.get("num_layers_original")
        if isinstance(depth, int) and depth != n:
            raise DepthlensError(f"{what} describe different models (num_layers {n} vs {depth})")
        if isinstance(obj.get("base_model"), dict):
            _check_identity(prof_id, obj["base_model"], what)
    elif model:
        _check_identity(prof_id, model, what)
    if isinstance(obj.get("num_layers"), int) and kind != _PRUNED and obj["num_layers"] != n:
        raise DepthlensError(
            f"{what} describe different models (num_layers {n} vs {obj['num_layers']})"
        )
    _check_blocks(n, obj.get("removed"), name)
    rows = obj.get("models")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        base = rows[0]  # a comparison's baseline is the profiled (original) model
        if isinstance(base.get("num_layers"), int) and base["num_layers"] != n:
            raise DepthlensError(
                f"{what} describe different models (the comparison's baseline "
                f"{base.get('label')!r} has {base['num_layers']} blocks, the profile {n})"
            )
        for r in rows:
            if isinstance(r, dict):
                _check_blocks(n, r.get("removed"), name)
