"""Which drafted tokens the verification keeps, and the token it adds.

Greedy: keep drafted tokens while each equals the full model's argmax, then add the full
model's argmax at the first mismatch (or after the last draft: the bonus token).

Sampling (Leviathan et al. 2023; Chen et al. 2023): keep drafted token x_i with probability
min(1, p_i(x_i) / q_i(x_i)); at the first rejection draw from norm(max(0, p_i − q_i)); when
every draft is kept, draw the bonus token from p_k. Each emitted token is then distributed
exactly as the full model's p, whatever the draft q.
"""

from __future__ import annotations

import torch


def accept_greedy(drafted: list[int], logits: torch.Tensor) -> tuple[int, int]:
    """(accepted count a, next token) for (k+1, V) verification ``logits``."""
    best = logits.argmax(dim=-1).tolist()  # one host copy for all k+1 positions
    a = 0
    while a < len(drafted) and drafted[a] == best[a]:
        a += 1
    return a, int(best[a])


def probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) in float32, rows = positions."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def accept_sampled(
    drafted: list[int],
    p: torch.Tensor,
    q: torch.Tensor,
    gen: torch.Generator,
) -> tuple[int, int]:
    """(accepted count a, next token) by the speculative-sampling rule.

    ``p``: (k+1, V) target probabilities; ``q``: (k, V) draft probabilities the drafted
    tokens were sampled from.
    """
    for i, x in enumerate(drafted):
        u = float(torch.rand((), generator=gen, device=gen.device))
        px, qx = float(p[i, x]), float(q[i, x])
        if qx > 0 and u * qx < px:  # u < min(1, p/q) without dividing
            continue
        residual = (p[i] - q[i]).clamp_min(0)
        total = float(residual.sum())
        dist = residual / total if total > 0 else p[i]
        return i, int(torch.multinomial(dist, 1, generator=gen))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=gen))
