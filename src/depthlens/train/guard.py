"""What ``train`` and ``study`` check before any work, and what they leave after a failure.

The older commands refuse a bad device, an unwritable output and overlapping data before
they start, and leave nothing behind when they fail; these checks give the training
commands the same manners. A run that has something worth resuming (a checkpoint, a
finished run of a study) is kept, and the message says so.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError


class Interrupted(DepthlensError):
    """Ctrl-C or SIGTERM during a run that keeps resumable state (exit 130, as Ctrl-C)."""

    exit_code = 130


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` (or ``cuda:N``) where torch sees no such GPU, before work."""
    import torch

    if not device:
        return
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DepthlensError(f"unknown --device {device!r}; pass cpu or cuda") from exc
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DepthlensError(
                f"--device {device}: this machine has no CUDA GPU that torch can use; "
                "pass --device cpu (or leave --device out)"
            )
        if dev.index is not None and dev.index >= n:
            raise DepthlensError(f"--device {device}: only {n} CUDA GPU(s) here (0..{n - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DepthlensError(f"--device {device}: no Apple GPU (MPS) here; pass --device cpu")
    elif dev.type not in ("cpu", "mps"):
        raise DepthlensError(f"--device {device} is not supported; pass cpu or cuda")


def check_output_folder(out: Path) -> None:
    """The output folder's parent exists and takes new files (before any training)."""
    from depthlens.io import check_writable

    if out.exists() and not out.is_dir():
        raise DepthlensError(f"output {out} is a file; pass a folder for -o")
    if not out.parent.exists():
        raise DepthlensError(
            f"the folder for output {out} does not exist; create {out.parent} first"
        )
    check_writable(out / ".probe" if out.is_dir() else out)


def load_disjoint(data: str, eval_data: str, text_field: str) -> Any:
    """Load the training text, refusing held-out text that shares documents with it.

    A "held-out loss" on training documents is a training loss: ``prune``, ``eval`` and
    ``heal`` refuse the same overlap. Returns the training source.
    """
    from depthlens.data import check_disjoint, load_text

    train_src = load_text(data, text_field=text_field)
    try:
        check_disjoint(train_src, load_text(eval_data, text_field=text_field))
    except DepthlensError as exc:
        raise DepthlensError(f"--data and --eval-data overlap: {exc}") from exc
    return train_src


@contextlib.contextmanager
def removed_on_failure(out: Path, worth_keeping: Callable[[], bool]) -> Iterator[None]:
    """Remove ``out`` if the body fails (error, Ctrl-C, SIGTERM) with nothing to resume.

    A folder that existed empty before is emptied, not removed. Where something is worth
    keeping, an interruption becomes :class:`Interrupted` naming the folder to resume.
    """
    was_empty_dir = out.is_dir() and not any(out.iterdir())
    try:
        yield
    except BaseException as exc:
        if not worth_keeping():
            _remove(out, keep_dir=was_empty_dir)
        elif isinstance(exc, KeyboardInterrupt):
            raise Interrupted(
                f"interrupted; the unfinished run is kept in {out}: rerun the same command "
                "to resume it, or delete the folder"
            ) from exc
        raise


def _remove(out: Path, keep_dir: bool) -> None:
    if not keep_dir:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
