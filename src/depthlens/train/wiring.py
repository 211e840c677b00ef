"""The three standard sublayer equations a residual scheme can wire (its ``forward``).

A wiring is ``forward(sub, h, *args) -> h′``: ``sub`` is the lab's sublayer
(:class:`~depthlens.train.model.Residual`), which holds the scheme's numbers for its block
(``g``, ``c``, ``alpha``), its norm N (or the ReZero gate) and the branch F with drop-path
(``sub.branch_out(x, *args)``; ``args`` are the branch's extra inputs, RoPE's cos and sin).
A scheme with another equation passes its own function of the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from torch import Tensor

NormPlace = Literal["pre", "post", "none"]


class Sublayer(Protocol):
    """What a wiring reads from the sublayer it computes."""

    @property
    def g(self) -> float:
        """Scale on N(h) before the branch (the scheme's ``input_scale(ℓ, L)``)."""

    @property
    def c(self) -> float:
        """Scale on the branch output (``branch_scale(L)``)."""

    @property
    def alpha(self) -> float:
        """Multiplier on the skip path (``skip_scale(L)``)."""

    def normalize(self, x: Tensor) -> Tensor:
        """N(x) (schemes with a norm)."""

    def gated(self, y: Tensor) -> Tensor:
        """γ·y with the learned gate γ (schemes without a norm)."""

    def branch_out(self, x: Tensor, *args: Tensor) -> Tensor:
        """F(x), with drop-path while training."""


class Wiring(Protocol):
    """A sublayer equation: ``forward(sub, h, *args) -> h′`` (B, T, C) -> (B, T, C)."""

    def __call__(self, sub: Sublayer, h: Tensor, /, *args: Tensor) -> Tensor:
        """The sublayer's output stream."""


def pre_norm(sub: Sublayer, h: Tensor, *args: Tensor) -> Tensor:
    """h′ = h + c·F(g·N(h))  (pre-ln: g = c = 1; lns: g = 1/√ℓ; scaled: c = 1/√L)."""
    x = sub.normalize(h)
    x = x * sub.g if sub.g != 1.0 else x
    y = sub.branch_out(x, *args)
    return h + (y * sub.c if sub.c != 1.0 else y)


def post_norm(sub: Sublayer, h: Tensor, *args: Tensor) -> Tensor:
    """h′ = N(α·h + F(h))  (post-ln: α = 1; deepnorm: α = (2L)^¼)."""
    skip = sub.alpha * h if sub.alpha != 1.0 else h
    return sub.normalize(skip + sub.branch_out(h, *args))


def gated(sub: Sublayer, h: Tensor, *args: Tensor) -> Tensor:
    """h′ = h + γ·F(h)  (rezero: γ learned, initialised 0; no norm)."""
    return h + sub.gated(sub.branch_out(h, *args))


#: The standard wiring of each norm place.
WIRINGS: dict[NormPlace, Wiring] = {"pre": pre_norm, "post": post_norm, "none": gated}
