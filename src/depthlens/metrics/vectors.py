"""What one block did to a batch of tokens: the vectors every per-block metric reads.

A per-block metric record (:class:`~depthlens.metrics.registry.MetricRecord` with
``per_token``) is a function of one :class:`BlockVectors`; the norms are computed once
and shared by every record.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

EPS = 1e-12


@dataclass(frozen=True)
class BlockVectors:
    """Block l on N real tokens: h_l, a_l and h_{l+1}, all (N, d) float32."""

    h: torch.Tensor  # h_l, the stream entering the block
    a: torch.Tensor  # a_l, what the attention sublayer adds
    out: torch.Tensor  # h_{l+1}
    parallel: bool = False  # attention and MLP both read h_l (GPT-NeoX, Phi)

    @cached_property
    def delta(self) -> torch.Tensor:
        """Δ_l = h_{l+1} − h_l, (N, d)."""
        return self.out - self.h

    @cached_property
    def m(self) -> torch.Tensor:
        """m_l = Δ_l − a_l: what the MLP adds, for sequential, parallel and post-norm wiring."""
        return self.delta - self.a

    @cached_property
    def ha(self) -> torch.Tensor:
        """The stream the MLP reads: h_l + a_l, or h_l when the block is parallel."""
        return self.h if self.parallel else self.h + self.a

    def norm(self, name: str) -> torch.Tensor:
        """‖x‖ per token for x in h, a, m, delta, ha, out (cached), (N,)."""
        cache = self.__dict__.setdefault("_norms", {})
        if name not in cache:
            cache[name] = getattr(self, name).norm(dim=-1)
        return cache[name]

    def ratio(self, num: str, den: str) -> torch.Tensor:
        """‖num‖ / ‖den‖ per token."""
        return self.norm(num) / self.norm(den).clamp_min(EPS)

    def cos(self, x: str, y: str) -> torch.Tensor:
        """Cosine of x and y per token."""
        dot = (getattr(self, x) * getattr(self, y)).sum(-1)
        return dot / (self.norm(x) * self.norm(y)).clamp_min(EPS)
