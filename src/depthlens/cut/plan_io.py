"""A plan on disk: the JSON and, beside it, its maps T in safetensors (sha256 in the JSON).

``plan.json`` + ``plan.T.safetensors``: the JSON names the file and records its sha256,
so ``depthlens prune --plan plan.json`` applies exactly the plan that was written, and a
changed, missing or swapped map file is an error rather than a different model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
from safetensors.torch import load, save

from depthlens.cut.plan import CutPlan
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_bytes
from depthlens.results import read_result, write_result


def maps_path(path: str | Path) -> Path:
    """Where the maps of the plan JSON at ``path`` go: ``<stem>.T.safetensors`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}.T.safetensors")


def save_plan(plan: CutPlan, path: str | Path) -> list[Path]:
    """Write the plan JSON (and its maps, first) atomically; returns the files written."""
    maps = plan.maps()
    payload = plan.payload()
    written = []
    if maps:
        side = maps_path(path)
        blob = save(
            {
                f"T.{i}": t.detach().to("cpu", torch.float64).contiguous()
                for i, t in sorted(maps.items())
            }
        )
        atomic_write_bytes(side, blob)
        written.append(side)
        payload["transforms"] = {
            "file": side.name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "blocks": sorted(maps),
        }
    write_result(path, plan.envelope, payload)
    return [Path(path), *written]


def load_plan(path: str | Path) -> CutPlan:
    """Read a plan JSON and the maps beside it (checked against the recorded sha256)."""
    env, payload = read_result(path, CutPlan.KIND)
    plan = CutPlan._from_parts(env, payload)
    from depthlens.cut.multi import check_removed

    if plan.removed or not plan.sublayers:  # a sublayer-only cut removes no block
        check_removed(plan.removed, plan.num_layers)  # an edited plan: ascending, no repeats
    info = payload.get("transforms")
    if not info:
        if payload.get("has_transform"):
            raise DepthlensError(
                f"plan {path} merges a map T but was written without it "
                "(schema 1); plan again and write it with -o"
            )
        return plan
    side = Path(path).with_name(str(info.get("file")))
    if not side.is_file():
        raise DepthlensError(
            f"the maps of plan {path} are missing: {side} not found; keep "
            "the .T.safetensors file beside the plan JSON"
        )
    blob = side.read_bytes()
    if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
        raise DepthlensError(
            f"{side} does not match plan {path} (sha256 differs); it was "
            "changed or belongs to another plan"
        )
    tensors = load(blob)
    maps = {int(k.removeprefix("T.")): t for k, t in tensors.items()}
    transform = maps.pop(plan.merge_into) if plan.merge_into is not None else None
    merges = tuple((i, maps[i]) for i in payload.get("merge_blocks") or [])
    return dataclasses.replace(plan, transform=transform, merges=merges)
