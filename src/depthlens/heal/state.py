"""Resumable healing state, in one file written through a temporary file and a rename.

The trained parameters, the optimizer, the stream's cursor and the curve so far.
A SIGKILL at any moment leaves either the previous checkpoint or the new one, never half
of one; the data order and the schedule are functions of (seed, step), so a rerun that
loads the state continues the same curve and ends with the same weights.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from depthlens.heal.stream import Cursor
from depthlens.io import atomic_torch_save, load_torch_state

STATE_FILE = "heal-state.pt"


@dataclass
class HealState:
    """Where a healing run is: the next step, what it read, its curve and early stopping."""

    step: int = 0
    tokens: int = 0  # real tokens read so far
    cursor: Cursor = field(default_factory=Cursor)
    curve: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_params: dict[str, torch.Tensor] | None = None
    mark: float | None = None  # held-out NLL of the last gain of more than min_delta
    bad: int = 0  # evaluations since that gain
    stopped: str | None = None
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)


def state_dir_for(out: str | Path) -> Path:
    """The hidden folder beside the output where a run keeps its resumable state."""
    p = Path(out)
    return p.parent / f".{p.name}.heal-state"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (LoRA adapters or the maps), by name."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    """Copy ``params`` (from :func:`trainable_state`) into ``model``'s parameters."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in params.items():
            named[n].copy_(t.to(named[n].device, named[n].dtype))


def save_state(
    folder: Path,
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    st: HealState,
    identity: dict[str, Any],
) -> None:
    """Write ``st`` atomically into ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = {
        "identity": identity,
        "params": trainable_state(model),
        "optim": optim.state_dict(),
        "step": st.step,
        "tokens": st.tokens,
        "cursor": st.cursor.to_dict(),
        "curve": st.curve,
        "log": st.log,
        "best": st.best,
        "best_params": st.best_params,
        "mark": st.mark,
        "bad": st.bad,
        "stopped": st.stopped,
        "seconds": st.seconds,
        "resumed_from": st.resumed_from,
    }
    atomic_torch_save(blob, folder / STATE_FILE)


def load_state(
    folder: Path, model: torch.nn.Module, optim: torch.optim.Optimizer, identity: dict[str, Any]
) -> HealState | None:
    """Restore the run saved in ``folder`` into ``model``/``optim``; None when there is none."""
    blob = load_torch_state(
        folder / STATE_FILE,
        identity,
        "the healing state",
        "pass --overwrite to start again",
        f"{folder} holds an unfinished healing run with other settings, data or models; "
        "pass --overwrite to start again or choose another -o",
    )
    if blob is None:
        return None
    load_trainable_(model, blob["params"])
    optim.load_state_dict(blob["optim"])
    return HealState(
        step=int(blob["step"]),
        tokens=int(blob["tokens"]),
        cursor=Cursor(**blob["cursor"]),
        curve=list(blob["curve"]),
        log=list(blob["log"]),
        best=blob["best"],
        best_params=blob["best_params"],
        mark=blob["mark"],
        bad=int(blob["bad"]),
        stopped=blob["stopped"],
        seconds=float(blob["seconds"]),
        resumed_from=[*blob["resumed_from"], int(blob["step"])],
    )


def drop_state(folder: Path) -> None:
    """Remove a finished run's state."""
    shutil.rmtree(folder, ignore_errors=True)
