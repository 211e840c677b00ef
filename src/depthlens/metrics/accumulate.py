"""Typed float64 accumulators: the only state a streaming analysis keeps.

Every statistic over tokens is a sum of per-token values plus a count (or a running
maximum), so memory does not grow with the data, shards can be all-reduced
(``torch.distributed``) and a run can be checkpointed and resumed by saving these
tensors. Each analysis declares its own ``@dataclass`` subclass of :class:`Accumulator`
with one named float64 CPU tensor per statistic; a field may also hold a nested
accumulator (or None when that part is switched off), and a field whose metadata says
``{"reduce": "max"}`` is a running maximum rather than a sum.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch

from depthlens.errors import DepthlensError


def zeros(*shape: int) -> torch.Tensor:
    """A float64 CPU accumulator of ``shape`` (where every sum lives, whatever the device)."""
    return torch.zeros(shape, dtype=torch.float64)


#: Field metadata of a running maximum (all-reduced with MAX, not SUM):
#: ``peak: torch.Tensor = field(metadata=MAX)``.
MAX = {"reduce": "max"}


def ratio(num: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``num / count``, NaN where the count is zero."""
    return num / torch.where(count > 0, count, torch.nan)


# The device rule, in one place. Accumulators are float64 tensors on the CPU whatever
# device the model runs on; inputs go to the model's input device (``LoadedModel.device``).
# Per-token values are reduced where they were computed (on the model's device, in
# float64 there), and only the reduced value crosses to the CPU, through these helpers,
# before it is added to an accumulator. Adding a device tensor to a CPU accumulator
# directly fails on CUDA ("expected all tensors to be on the same device").


def widen(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the widest float its device has, for reductions there (float64; MPS: float32)."""
    return x.detach().to(torch.float32 if x.device.type == "mps" else torch.float64)


def host(x: torch.Tensor) -> torch.Tensor:
    """``x`` (any device, any float dtype) as a float64 CPU tensor, ready to accumulate."""
    return x.detach().to("cpu", torch.float64)


def host_sum(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ ``x`` (all elements, or over ``dim``), reduced on x's device; float64 on the CPU."""
    wide = widen(x)
    return host(wide.sum() if dim is None else wide.sum(dim))


def comm_device(backend: str) -> torch.device | None:
    """Where a CPU accumulator must go to be all-reduced: the current GPU under NCCL.

    NCCL reduces only CUDA tensors; gloo (and MPI) reduce CPU tensors in place (None).
    """
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None


def all_reduce_host(buf: torch.Tensor, how: str = "sum") -> None:
    """All-reduce the CPU float64 tensor ``buf`` in place over the default process group."""
    import torch.distributed as dist

    op = dist.ReduceOp.MAX if how == "max" else dist.ReduceOp.SUM
    dev = comm_device(str(dist.get_backend()))
    if dev is None:
        dist.all_reduce(buf, op=op)
        return
    staged = buf.to(dev)  # round trip through the GPU; the accumulator stays on the CPU
    dist.all_reduce(staged, op=op)
    buf.copy_(staged.cpu())


def host_max(x: torch.Tensor) -> torch.Tensor:
    """Max ``x`` over all elements (−inf when empty), reduced on x's device; float64 CPU."""
    if x.numel() == 0:
        return torch.tensor(float("-inf"), dtype=torch.float64)
    return host(x.detach().max())


@dataclass
class Accumulator:
    """Base of the typed accumulators: walks the tensor fields, nested ones included."""

    def _leaves(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor, str]]:
        for f in fields(self):
            value = getattr(self, f.name)
            name = f"{prefix}{f.name}"
            if isinstance(value, Accumulator):
                yield from value._leaves(f"{name}.")
            elif isinstance(value, torch.Tensor):
                yield name, value, f.metadata.get("reduce", "sum")
            elif value is not None:
                raise TypeError(f"accumulator field {name} holds {type(value).__name__}")

    def all_reduce(self) -> None:
        """Combine every field over the ranks of the default process group, if any."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for _name, buf, how in sorted(self._leaves(), key=lambda t: t[0]):
            all_reduce_host(buf, "max" if how == "max" else "sum")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (safetensors-compatible: contiguous, dotted names)."""
        return {name: t.contiguous() for name, t, _ in self._leaves()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore, in place, tensors saved by :meth:`state_dict` of the same layout."""
        mine = {name: t for name, t, _ in self._leaves()}
        if set(mine) != set(state) or any(mine[k].shape != state[k].shape for k in mine):
            raise DepthlensError(
                "the checkpoint holds other statistics than this run accumulates (written "
                "by another depthlens version or other options); delete it to start over"
            )
        for name, t in mine.items():
            t.copy_(state[name].to(torch.float64))
