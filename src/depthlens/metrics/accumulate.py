"""Float64 sums: the only state a streaming analysis keeps.

Every statistic over tokens is a sum of per-token values plus a count, so memory does not
grow with the data, shards can be all-reduced (``torch.distributed``) and a run can be
checkpointed and resumed by saving these tensors.
"""

from __future__ import annotations

import torch


class Sums:
    """Named float64 accumulators on the CPU."""

    def __init__(self) -> None:
        self.t: dict[str, torch.Tensor] = {}

    def add(self, name: str, value: torch.Tensor | float) -> None:
        """Add ``value`` (any shape, any float dtype) into accumulator ``name``."""
        v = torch.as_tensor(value).detach().to("cpu", torch.float64)
        cur = self.t.get(name)
        if cur is None:
            self.t[name] = v.clone()
        else:
            cur += v

    def get(self, name: str) -> torch.Tensor:
        """The accumulated tensor (zeros if nothing was added)."""
        return self.t.get(name, torch.zeros((), dtype=torch.float64))

    def mean(self, name: str, count: str) -> torch.Tensor:
        """``name / count``, NaN where the count is zero."""
        n = self.get(count)
        return self.get(name) / torch.where(n > 0, n, torch.nan)

    def all_reduce(self) -> None:
        """Sum every accumulator over the ranks of the default process group, if any."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for name in sorted(self.t):
            buf = self.t[name]
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (safetensors-compatible: contiguous, named)."""
        return {k: v.contiguous() for k, v in sorted(self.t.items())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore accumulators saved by :meth:`state_dict`."""
        self.t = {k: v.to(torch.float64).clone() for k, v in state.items()}
