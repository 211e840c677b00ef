"""A least-squares start for the tuned lens (a depthlens option, not in the reference).

Training with the exact KL loss costs a full unembedding per token and layer, forward and
backward (about 4·d·V·L FLOPs per token, ~3.4 GFLOP on SmolLM2-135M). A ridge regression of
the final state on each layer's state, h_L ≈ h_l + A_l h_l + b_l, needs only O(d²) float64
sums per token and layer from the same forward, so it sees many more tokens for the same
compute; KL training then starts from it. The default stays the reference's identity start.
"""

from __future__ import annotations

import torch

from depthlens.capture.stream import stream_states
from depthlens.data.windows import TokenWindows
from depthlens.metrics.accumulate import host, widen
from depthlens.models.loading import LoadedModel
from depthlens.tuned.lens import TunedLens


def lstsq_init_(
    lens: TunedLens,
    lm: LoadedModel,
    data: TokenWindows,
    valid: torch.Tensor,
    batch_size: int = 4,
    ridge: float = 1e-3,
) -> int:
    """Set every translator to the ridge fit of h_L on h_l; returns the tokens used.

    Sums per layer: G = Σ [h_l, 1]ᵀ[h_l, 1] and B = Σ [h_l, 1]ᵀ h_L in float64 (O(d²)
    memory, any number of tokens); M = (G + λ·mean diag(G)·I)⁻¹ B, then
    A_l = M[:d]ᵀ − I and b_l = M[d].
    """
    n_layers, d = lens.n_layers, lens.d_model
    gram = torch.zeros(n_layers, d + 1, d + 1, dtype=torch.float64)
    cross = torch.zeros(n_layers, d + 1, d, dtype=torch.float64)
    n = 0
    for _rows, picked in stream_states(lm, data, batch_size, valid):
        # (N, d) rows widened on the model's device; only the products cross to the CPU.
        states = [widen(t) for t in picked]
        y = states[n_layers]  # (N, d)
        ones = torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)
        for l in range(n_layers):
            x = torch.cat([states[l], ones], dim=1)  # (N, d+1)
            gram[l] += host(x.T @ x)
            cross[l] += host(x.T @ y)
        n += int(y.shape[0])
    eye = torch.eye(d + 1, dtype=torch.float64)
    with torch.no_grad():
        for l, t in enumerate(lens.translators):
            g = gram[l]
            lam = ridge * float(g.diagonal().mean())
            m = torch.linalg.solve(g + lam * eye, cross[l])  # (d+1, d)
            weight = m[:d].T - torch.eye(d, dtype=torch.float64)
            t.weight.copy_(weight.to(t.weight.dtype))  # type: ignore[operator]
            t.bias.copy_(m[d].to(t.bias.dtype))  # type: ignore[operator]
    return n
