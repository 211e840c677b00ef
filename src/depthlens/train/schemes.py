"""The residual schemes of the lab, as data, and stochastic depth (drop-path).

A scheme fixes where the block normalises (before the branch, after the add, or nowhere)
and three constants: a scale on the normalised branch input, a scale on the branch
output, and a multiplier on the skip path; plus an init gain for the branch weights.
ℓ is the 1-based block index and L the depth. N is RMSNorm throughout (see docs/TRAIN.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from depthlens.errors import DepthlensError

NormPlace = Literal["pre", "post", "none"]


@dataclass(frozen=True)
class Scheme:
    """One residual scheme: the block formula and the constants it needs."""

    name: str
    formula: str
    norm: NormPlace
    paper: str
    exports_as_llama: bool  # True: inference is exactly a LlamaForCausalLM

    def input_scale(self, ell: int, depth: int) -> float:
        """Factor on N(h) before the branch: 1/√ℓ for LayerNorm Scaling."""
        return 1.0 / math.sqrt(ell) if self.name == "lns" else 1.0

    def branch_scale(self, depth: int) -> float:
        """Factor on the branch output F(·): 1/√L for depth-µP ("scaled")."""
        return 1.0 / math.sqrt(depth) if self.name == "scaled" else 1.0

    def skip_scale(self, depth: int) -> float:
        """Multiplier α on the skip path h: (2L)^{1/4} for DeepNorm."""
        return (2.0 * depth) ** 0.25 if self.name == "deepnorm" else 1.0

    def init_gain(self, depth: int) -> float:
        """Factor β on the initial branch weights (v, o, MLP): (8L)^{-1/4} for DeepNorm."""
        return (8.0 * depth) ** -0.25 if self.name == "deepnorm" else 1.0

    def to_dict(self) -> dict[str, object]:
        """JSON form written into results."""
        return {
            "name": self.name,
            "formula": self.formula,
            "norm": self.norm,
            "paper": self.paper,
            "exports_as_llama": self.exports_as_llama,
        }


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("pre-ln", "h + F(N(h))", "pre", "GPT-2 / Llama (Xiong et al. 2020)", True),
        Scheme("post-ln", "N(h + F(h))", "post", "Vaswani et al. 2017", False),
        Scheme(
            "lns",
            "h + F(N(h)/√ℓ)",
            "pre",
            "LayerNorm Scaling, Sun et al. 2025 (The Curse of Depth in LLMs)",
            True,
        ),
        Scheme(
            "deepnorm",
            "N(α·h + F(h)), α=(2L)^¼, β=(8L)^-¼",
            "post",
            "DeepNet, Wang et al. 2022",
            False,
        ),
        Scheme(
            "rezero",
            "h + α_ℓ·F(h), α_ℓ learned, init 0",
            "none",
            "ReZero, Bachlechner et al. 2020",
            True,
        ),
        Scheme(
            "scaled",
            "h + F(N(h))/√L",
            "pre",
            "depth-µP, Yang et al. 2023; Bordelon et al. 2023",
            True,
        ),
    )
}


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name``, or a did-you-mean error."""
    from depthlens.metrics.registry import unknown_choice

    if name not in SCHEMES:
        raise DepthlensError(unknown_choice("--scheme", name, sorted(SCHEMES)))
    return SCHEMES[name]


def parse_schemes(text: str) -> tuple[Scheme, ...]:
    """``pre-ln,lns`` → schemes, each checked."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise DepthlensError(f"--schemes is empty ({text!r}); pass e.g. pre-ln,lns")
    return tuple(get_scheme(n) for n in names)


def drop_rates(p: float, depth: int) -> list[float]:
    """Stochastic depth's linear rule: block ℓ drops with p·ℓ/L (Huang et al. 2016)."""
    return [p * ell / depth for ell in range(1, depth + 1)]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero a branch for whole sequences with probability p, scaling the rest by 1/(1-p).

    The expectation is unchanged, so evaluation uses the branch as is (identity at eval).
    """
    if p <= 0.0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= p  # (B, 1, 1)
    return x * keep.to(x.dtype) / (1.0 - p)
