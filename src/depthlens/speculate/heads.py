"""Readouts of the draft and of the verification: the model's own head, full or reduced.

Both read the *normed* last hidden state the decoder base returns, through the model's real
unembedding module with the family's logit scale and soft-cap (the same post-processing
:class:`depthlens.metrics.lens.Lens` applies), so the full head gives exactly the logits of
``model(...)``. The reduced head (FR-Spec, Zhao et al. 2025) keeps only the rows of the N
most frequent tokens of calibration text: a draft step then pays an N-row readout instead
of the whole vocabulary; verification always uses the full head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, get_submodule
from depthlens.errors import DepthlensError
from depthlens.metrics.lens import Lens


class FullHead:
    """Logits over the whole vocabulary: the model's own head."""

    def __init__(self, model: nn.Module, spec: ArchSpec) -> None:
        if spec.unembed is None:
            raise DepthlensError(
                f"family '{spec.family}' has no language-model head to decode with"
            )
        w = spec.wiring
        self.lens = Lens(None, get_submodule(model, spec.unembed), w.logit_softcap, w.logit_scale)
        weight: Any = self.lens.unembed.weight
        self.vocab = int(weight.shape[0])
        self.token_ids: torch.Tensor | None = None  # row i is token i

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, d) normed states -> (N, V) float32 logits."""
        return self.lens.logits(h)


class ReducedHead:
    """Logits over the ``token_ids`` rows only (a copy of those rows, N x d)."""

    def __init__(self, full: FullHead, token_ids: torch.Tensor) -> None:
        unembed: Any = full.lens.unembed
        self.token_ids = token_ids.to(unembed.weight.device)
        self.weight = unembed.weight.detach()[self.token_ids].contiguous()  # (N, d)
        bias = getattr(unembed, "bias", None)
        self.bias = None if bias is None else bias.detach()[self.token_ids].contiguous()
        self.softcap, self.scale = full.lens.softcap, full.lens.scale
        self.vocab = full.vocab

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, d) normed states -> (N, n_kept) float32 logits (index i is ``token_ids[i]``)."""
        z = nn.functional.linear(h, self.weight, self.bias).float()
        if self.scale != 1.0:
            z = z / self.scale
        if self.softcap is not None:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


DraftHead = FullHead | ReducedHead


def frequent_tokens(
    ids: torch.Tensor, n: int, vocab: int, always: tuple[int, ...] = ()
) -> torch.Tensor:
    """The ``n`` most frequent ids of ``ids`` (ties by id), plus ``always`` (e.g. EOS), sorted."""
    if n < 1:
        raise DepthlensError(f"--draft-vocab must be at least 1, got {n}")
    counts = torch.bincount(ids.flatten().clamp(0, vocab - 1), minlength=vocab)
    top = torch.argsort(counts, descending=True, stable=True)[: min(n, vocab)]
    keep = set(top.tolist()) | {t for t in always if 0 <= t < vocab}
    return torch.tensor(sorted(keep), dtype=torch.long)


def to_full_vocab(probs: torch.Tensor, head: DraftHead) -> torch.Tensor:
    """(N, n_kept) probabilities of a reduced head -> (N, V), zero outside its rows."""
    if head.token_ids is None:
        return probs
    out = probs.new_zeros(probs.shape[0], head.vocab)
    out[:, head.token_ids] = probs
    return out
