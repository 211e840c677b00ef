"""Resumable runs: the float64 sums saved atomically every N batches.

A checkpoint is one safetensors file whose metadata holds the number of batches done and
the hash of everything that determines the result (model, data, options). It is written
to a temporary name and renamed, so it is always whole; a restarted run resumes only
from a checkpoint with the same hash, so a changed command never mixes two runs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from depthlens.errors import DepthlensError
from depthlens.io import disk_error, follow_umask_
from depthlens.metrics.accumulate import Accumulator


@dataclass
class Checkpointer:
    """Saves and restores an :class:`Accumulator` for one rank of one run."""

    path: Path
    every: int
    run_id: str

    @classmethod
    def create(
        cls, base: str | Path | None, every: int, run_id: str, rank: int
    ) -> Checkpointer | None:
        """A checkpointer at ``base`` (one file per rank), or None when not asked for."""
        if base is None or every <= 0:
            return None
        return cls(checkpoint_file(base, rank), every, run_id)

    def restore(self, sums: Accumulator) -> int:
        """Load saved sums if they belong to this run; return the batches already done."""
        if not self.path.is_file():
            return 0
        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except Exception as exc:  # noqa: BLE001 - any damage means "cannot resume"
            raise DepthlensError(
                f"checkpoint {self.path} is unreadable ({type(exc).__name__}); delete it to "
                "start over"
            ) from exc
        if meta.get("run_id") != self.run_id:
            raise DepthlensError(
                f"checkpoint {self.path} belongs to a different run (model, data or options "
                "changed); delete it or use another --checkpoint path"
            )
        sums.load_state_dict(tensors)
        return int(meta["batches_done"])

    def maybe_save(self, sums: Accumulator, batches_done: int) -> None:
        """Save every ``every`` batches, atomically (temporary file, then rename)."""
        if batches_done % self.every:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        meta = {"run_id": self.run_id, "batches_done": str(batches_done)}
        try:
            save_file(sums.state_dict(), str(tmp), metadata=meta)
            follow_umask_(tmp)  # safetensors writes 0600
            os.replace(tmp, self.path)
        except OSError as exc:  # e.g. disk full: no partial file, one-line error
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise disk_error(self.path, exc) from exc

    def remove(self) -> None:
        """Delete the checkpoint once the final result is written."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def checkpoint_file(base: str | Path, rank: int) -> Path:
    """The checkpoint file of ``rank`` for checkpoint path ``base`` (one file per rank)."""
    p = Path(base)
    return p.with_name(f"{p.name}.rank{rank}") if rank else p


def discard(base: str | Path | None, rank: int = 0) -> None:
    """Delete ``rank``'s checkpoint of ``base``; call it only once the output is on disk."""
    if base is not None:
        with contextlib.suppress(FileNotFoundError):
            checkpoint_file(base, rank).unlink()
