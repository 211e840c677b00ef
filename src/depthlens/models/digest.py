"""A content hash of a model's weights: the part of its identity the config cannot give.

Two networks with one config (a base model and its fine-tune, or the same blocks in
another order) share every config field; only the tensors tell them apart. The digest is
streamed over every tensor of the state dict in name order, each preceded by its name,
dtype and shape. Floating tensors are hashed as bfloat16, so the same checkpoint loaded
in float32, bfloat16 or float16 keeps one identity (the config fingerprint leaves the
dtype out for the same reason); weights that differ only below bfloat16 precision share
a digest.

A model fresh from disk has its digest cached under ``<cache>/digests`` keyed by its
weight files (path, size, modification time), so it is computed once per checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Elements converted and hashed at a time, so a large embedding is never copied whole.
_CHUNK = 1 << 22
#: The canonical dtype of floating tensors in the hash (see the module docstring).
_CANONICAL = torch.bfloat16
#: Bumped when the hashing scheme changes, so cached digests of the old scheme are unused.
DIGEST_SCHEME = "bf16-sha256-1"


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The state dict in name order, tied tensors once (under their first name)."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    out = []
    for name, t in sorted(model.state_dict(keep_vars=True).items()):
        key = (t.data_ptr(), tuple(t.shape))
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out.append((name, t))
    return out


def state_signature(model: nn.Module) -> tuple[Any, ...]:
    """Cheap stand-in for the weights: names, storage, version counters, shapes.

    An in-place update (an optimiser step, a merged map) bumps a tensor's version
    counter; a removed block changes the names; a move changes the storage. Equal
    signatures therefore mean the digest computed before still holds.
    """
    return tuple(
        (n, t.data_ptr(), _version(t), tuple(t.shape), str(t.dtype)) for n, t in _tensors(model)
    )


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place version counter; -1 for inference tensors, which have none."""
    try:
        return int(t._version)
    except RuntimeError:  # made under inference_mode (e.g. weights accelerate offloaded)
        return -1


def weights_digest(model: nn.Module) -> str | None:
    """sha256 of every tensor's name, dtype, shape and bytes (32 hex digits); None if offloaded.

    sha256 rather than blake2b: with the SHA CPU extensions it is about twice as fast.

    Weights on the meta device (offloaded by accelerate) are not in memory to hash.
    """
    h = hashlib.sha256()
    h.update(DIGEST_SCHEME.encode())
    for name, t in _tensors(model):
        if t.device.type == "meta":
            return None
        flat = t.detach().reshape(-1)
        dtype = _CANONICAL if flat.is_floating_point() else flat.dtype
        h.update(f"\n{name}|{str(dtype).removeprefix('torch.')}|{list(t.shape)}\n".encode())
        for i in range(0, flat.numel(), _CHUNK):
            piece = flat[i : i + _CHUNK].to("cpu", dtype).contiguous()
            h.update(piece.view(torch.uint8).numpy().data)  # the buffer, not a copy
    return h.hexdigest()[:32]


def _files_key(path: Path, dtype: str) -> str | None:
    """Key of the weight files in ``path`` (resolved path, size, mtime), or None if none."""
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not files:
        return None
    parts = [DIGEST_SCHEME, dtype]
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass
class DigestCache:
    """The digest of one loaded model, recomputed only when its weights change.

    ``bind_files`` ties the model as loaded to its weight files, so the digest is read
    from (or written to) the on-disk cache while the weights are untouched.
    """

    _known: tuple[tuple[Any, ...], str | None] | None = None
    _disk: tuple[Path, tuple[Any, ...]] | None = None  # (cache file, signature at load)

    def bind_files(self, model: nn.Module, path: Path, cache: Path, dtype: str) -> None:
        """Remember that ``model`` holds exactly the weights saved in ``path``."""
        try:
            key = _files_key(path, dtype)
        except OSError:
            return
        if key is not None:
            self._disk = (cache / "digests" / f"{key}.json", state_signature(model))

    def of(self, model: nn.Module) -> str | None:
        """The weights digest of ``model`` (cached while the weights are unchanged)."""
        sig = state_signature(model)
        if self._known is not None and self._known[0] == sig:
            return self._known[1]
        disk = self._disk[0] if self._disk is not None and self._disk[1] == sig else None
        digest = _read_digest(disk) if disk is not None else None
        if digest is None:
            digest = weights_digest(model)
            if disk is not None and digest is not None:
                _write_digest(disk, digest)
        self._known = (sig, digest)
        return digest


def _read_digest(file: Path) -> str | None:
    try:
        d = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    got = d.get("weights") if isinstance(d, dict) else None
    return got if isinstance(got, str) and d.get("scheme") == DIGEST_SCHEME else None


def _write_digest(file: Path, digest: str) -> None:
    from depthlens.errors import DepthlensError
    from depthlens.io import atomic_write_json

    try:
        os.makedirs(file.parent, exist_ok=True)
        atomic_write_json(file, {"scheme": DIGEST_SCHEME, "weights": digest})
    except (OSError, DepthlensError):
        pass  # a read-only cache only costs recomputing the digest next time
