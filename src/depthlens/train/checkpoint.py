"""Resumable training state: model, optimiser, step and loss curve in one atomic file.

The data order and the drop-path randomness are functions of (seed, step), so restoring
these four things is enough for a resumed run to end with bit-identical weights on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from depthlens.io import atomic_torch_save, load_torch_state

STATE_FILE = "state.pt"


@dataclass
class TrainState:
    """Where a run is: the next step to take and the losses so far."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training wall time before this process (for tokens/s)
    cpu_seconds: float = 0.0  # CPU time of the training loop (all threads of this process)


def checkpoint_path(out: Path) -> Path:
    """The checkpoint file of the run writing into ``out``."""
    return out / "checkpoint" / STATE_FILE


def save_checkpoint(
    out: Path,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    state: TrainState,
    identity: dict[str, Any],
) -> None:
    """Write the checkpoint through a temporary file and a rename (never half-written)."""
    path = checkpoint_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "identity": identity,
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "step": state.step,
        "losses": list(state.losses),
        "seconds": state.seconds,
        "cpu_seconds": state.cpu_seconds,
    }
    atomic_torch_save(blob, path)


def load_checkpoint(
    out: Path, model: torch.nn.Module, optim: torch.optim.Optimizer, identity: dict[str, Any]
) -> TrainState | None:
    """Restore the run in ``out`` into ``model``/``optim``; None when there is none."""
    path = checkpoint_path(out)
    blob = load_torch_state(
        path,
        identity,
        "the checkpoint",
        "delete it or pass --overwrite to start again",
        f"the checkpoint in {path.parent} belongs to a run with other settings; pass "
        "--overwrite to start again or choose another -o",
    )
    if blob is None:
        return None
    model.load_state_dict(blob["model"])
    optim.load_state_dict(blob["optim"])
    return TrainState(
        int(blob["step"]),
        [float(x) for x in blob["losses"]],
        float(blob.get("seconds", 0.0)),
        float(blob.get("cpu_seconds", 0.0)),
    )
