"""Logit-lens metrics: how close each depth's readout is to the model's own output.

p(h) = softmax(U · final_norm(h)), with the final norm's statistics recomputed for h by
calling the model's real final-norm module (never a cached scale). KL conventions follow
tuned-lens (KL(p_L ‖ p_l), nats) and Csordás et al. (reverse KL, top-1/top-5 agreement,
prediction depth); JSD as in "Detection and Mitigation of Hallucination in Large
Reasoning Models".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, get_submodule
from depthlens.metrics.registry import streamed_lens_records


class Readout(Protocol):
    """What the lens metrics need from a lens: the logit lens here, or a tuned lens.

    ``layer`` is the residual-state index of ``h`` (0..L, L = the final state); the logit
    lens ignores it, the tuned lens (``depthlens.tuned``) picks its translator with it.
    """

    @property
    def unembed(self) -> nn.Module:
        """The model's unembedding (sizes the token chunks)."""
        ...

    def logits(self, h: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """(N, d) states -> (N, V) float32 logits."""
        ...


@dataclass
class Lens:
    """The model's own final norm and unembedding, applied to any residual state.

    The head's own post-processing comes from the resolved wiring: logits divided by
    ``scale`` (Granite's ``logits_scaling``), then soft-capped (Gemma 2/3), so the lens of
    h_L equals the model's logits.
    """

    final_norm: nn.Module | None
    unembed: nn.Module
    softcap: float | None = None
    scale: float = 1.0

    @classmethod
    def of(cls, model: nn.Module, spec: ArchSpec) -> Lens:
        """Build the lens from the architecture table and the spec's resolved wiring."""
        if not spec.has_lens or spec.unembed is None:
            raise ValueError(f"family '{spec.family}' has no logit lens")
        norm = get_submodule(model, spec.final_norm) if spec.final_norm else None
        w = spec.wiring
        return cls(norm, get_submodule(model, spec.unembed), w.logit_softcap, w.logit_scale)

    def logits(self, h: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """(N, d) states -> (N, V) float32 logits (the same at every ``layer``)."""
        x = h.to(execution_device(self.unembed))
        if self.final_norm is not None:
            x = self.final_norm(x)
        z = self.unembed(x).float()
        if self.scale != 1.0:
            z = z / self.scale
        if self.softcap is not None:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


def execution_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes, for placing its inputs.

    Accelerate's execution device when it offloaded the weights (they sit on the meta
    device between forwards), else the device of the weights.
    """
    dev = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if dev is not None:
        return torch.device(dev)
    return next(module.parameters()).device


def default_chunk(lens: Readout) -> int:
    """Tokens per lens chunk: large enough for an efficient matmul, ~256 MB of logits."""
    weight: Any = lens.unembed.weight  # (V, d); a Tensor, typed as Tensor | Module
    vocab = int(getattr(lens.unembed, "out_features", 0) or weight.shape[0])
    return max(32, min(1024, 2**26 // max(vocab, 1)))


@dataclass
class FinalDist:
    """p_L for a chunk of tokens, with what every layer's comparison reuses."""

    logp: torch.Tensor  # (c, V)
    p: torch.Tensor
    neg_entropy: torch.Tensor  # (c,) Σ p log p
    top1: torch.Tensor  # (c,)
    top5: torch.Tensor  # (c, 5)

    @classmethod
    def of(cls, z: torch.Tensor) -> FinalDist:
        """From the final logits."""
        # Same formula as _core_stats so that identical logits give exactly zero divergence.
        logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
        p = logp.exp()
        k = min(5, z.shape[-1])
        top = z.topk(k, dim=-1).indices
        return cls(logp, p, (p * logp).sum(-1), top[:, 0], top)


def _core_stats(
    z: torch.Tensor, p_fin: torch.Tensor, logp_fin: torch.Tensor, neg_h_fin: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Full-vocabulary reductions of one layer's logits, each (c,), by name.

    Fused by torch.compile when it can; the lens records read them from
    :attr:`LensView.core` (a new full-vocabulary reduction is one more entry here).
    """
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    logp = z - lse
    p = logp.exp()
    p_logp = (p * logp).sum(-1)
    # Direct forms (not entropy differences) so identical distributions give exactly 0.
    kl = (p_fin * (logp_fin - logp)).sum(-1)
    kl_rev = (p * (logp - logp_fin)).sum(-1)
    mix = 0.5 * (p + p_fin)
    h_mix = -torch.special.xlogy(mix, mix).sum(-1)
    # JSD = H(m) − (H(p) + H(p_L))/2.
    jsd = h_mix + 0.5 * (p_logp + neg_h_fin)
    return {
        "kl": kl,
        "kl_rev": kl_rev,
        "jsd": jsd,
        "entropy": -p_logp,
        "lse": lse.squeeze(-1),
    }


class LensKernel:
    """``_core_stats``, compiled once with torch.compile, falling back to eager.

    Eager PyTorch makes ~10 passes over each (tokens × vocab) logit block, which costs
    about twice the unembedding matmul itself; the compiled kernel fuses them into one
    or two passes (measured ~25x faster on CPU). ``kind``: "auto" | "compiled" | "eager".
    """

    def __init__(self, kind: str = "auto", fn: Any = None) -> None:
        if kind not in ("auto", "compiled", "eager"):
            raise ValueError(f"lens kernel must be auto, compiled or eager, got {kind!r}")
        self.requested = kind
        self.used = "eager" if kind == "eager" else "compiled"
        self._eager: Any = fn or _core_stats  # the reductions; _core_stats unless told
        self._fn: Any = self._eager
        if self.used == "compiled":
            self._fn = torch.compile(self._eager, dynamic=True)

    def __call__(self, *args: torch.Tensor) -> Any:
        """Run the kernel; on a compile failure under "auto", switch to eager for good."""
        if self.used == "eager":
            return self._eager(*args)
        try:
            return self._fn(*args)
        except Exception:
            if self.requested == "compiled":
                raise
            self.used, self._fn = "eager", self._eager
            return self._eager(*args)


def kl_to_final(
    z: torch.Tensor, p_fin: torch.Tensor, logp_fin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p_L ‖ softmax z) and logsumexp z: two full-vocabulary reductions, not five.

    For readouts where only the output KL and the loss are wanted (the skip sweep).
    Written like ``_core_stats``' KL (log p is z − lse, subtracted before weighting), so
    it gives the same values and exactly 0 for identical logits.
    """
    lse = torch.logsumexp(z, dim=-1, keepdim=True)  # (c, 1)
    kl = (p_fin * (logp_fin - (z - lse))).sum(-1)
    return kl, lse.squeeze(-1)


_EAGER = LensKernel("eager")


@dataclass
class LensView:
    """One depth's readout of a chunk of lens tokens, beside the model's own output.

    What a lens record's ``per_lens_token`` reads (as a residual record reads
    :class:`~depthlens.metrics.vectors.BlockVectors`): the logits ``z`` (c, V), the final
    distribution ``fin``, the fused full-vocabulary reductions ``core`` and the next-token
    ids (-1 where a window ends).
    """

    z: torch.Tensor  # (c, V) float32
    fin: FinalDist
    core: dict[str, torch.Tensor]  # (c,) each: kl, kl_rev, jsd, entropy, lse
    next_ids: torch.Tensor  # (c,) on z's device

    @classmethod
    def of(
        cls,
        z: torch.Tensor,
        fin: FinalDist,
        kernel: LensKernel = _EAGER,
        next_ids: torch.Tensor | None = None,
    ) -> LensView:
        """Run the fused reductions of ``z`` against ``fin`` (no next tokens unless given)."""
        core = kernel(z, fin.p, fin.logp, fin.neg_entropy)
        nxt = next_ids if next_ids is not None else torch.full(z.shape[:1], -1)
        return cls(z, fin, core, nxt.to(z.device))

    @functools.cached_property
    def topk(self) -> torch.Tensor:
        """(c, k) the readout's top-k token ids, k as for the output (sorted, [:, 0] argmax)."""
        return self.z.topk(self.fin.top5.shape[-1], dim=-1).indices

    @property
    def top1_agree(self) -> torch.Tensor:
        """(c,) bool: the readout's top-1 is the output's."""
        return self.topk[:, 0] == self.fin.top1

    @property
    def has_next(self) -> torch.Tensor:
        """(c,) bool: the token has a next token in its window."""
        return self.next_ids >= 0

    def next_token_logp(self) -> torch.Tensor:
        """Log p(h_l)(actual next token), over the tokens that have one only."""
        safe = self.next_ids.clamp_min(0).unsqueeze(-1)
        logp = self.z.gather(-1, safe).squeeze(-1) - self.core["lse"]
        return logp[self.has_next]


def layer_stats(
    z: torch.Tensor,
    fin: FinalDist,
    kernel: LensKernel = _EAGER,
    next_ids: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """{lens record: its per-token values} of logits ``z`` (c, V) against the output."""
    view = LensView.of(z, fin, kernel, next_ids)
    return {r.name: r.per_lens_token(view) for r in streamed_lens_records() if r.per_lens_token}


def prediction_depth(agree: torch.Tensor) -> torch.Tensor:
    """Per token, the smallest depth i such that every depth ≥ i agrees with the output.

    ``agree``: (L, N) bool, top-1 at lens depth i equals the final top-1. Depth L means
    only the final output has the answer (Csordás et al.).
    """
    n_layers, n = agree.shape
    settled = torch.ones(n, dtype=torch.bool)
    depth = torch.full((n,), n_layers, dtype=torch.long)
    for i in range(n_layers - 1, -1, -1):
        settled = settled & agree[i]
        depth = torch.where(settled, torch.full_like(depth, i), depth)
    return depth
