"""Data parallel runs under ``torchrun``: the process group, set up once per command.

``torchrun --nproc-per-node K -m depthlens profile …`` starts K processes with
``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in their environment. :func:`process_group` joins
them into the default group (gloo on CPU, nccl on CUDA); the analyses then shard their
windows rank::world and all-reduce their float64 sums, and only rank 0 writes outputs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator

import torch

from depthlens.errors import DepthlensError


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not started by torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError as exc:
        raise DepthlensError(f"WORLD_SIZE must be an integer, got {raw!r}") from exc


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_rank() -> bool:
    """True on rank 0 (or without a process group): the process that writes outputs."""
    return rank_world()[0] == 0


def default_backend() -> str:
    """The backend to use: nccl when CUDA is usable, gloo otherwise (CPU)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_group(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the default process group when started with ``WORLD_SIZE`` > 1.

    Returns True if this call created the group (the caller then tears it down). On CUDA
    each rank takes GPU ``LOCAL_RANK``.
    """
    import torch.distributed as dist

    if env_world_size() <= 1 or dist.is_initialized():
        return False
    if not dist.is_available():
        raise DepthlensError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    return True


def destroy_process_group() -> None:
    """Leave the default process group, if one exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(backend: str | None = None) -> Iterator[tuple[int, int]]:
    """Inside: the default group exists when torchrun asked for one; yields (rank, world)."""
    created = init_process_group(backend)
    try:
        yield rank_world()
    finally:
        if created:
            destroy_process_group()
