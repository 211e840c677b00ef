"""The residual schemes of the lab, as records, and stochastic depth (drop-path).

A scheme is one :class:`Scheme` record in :data:`SCHEMES` (a
:class:`~depthlens.registry.Registry`): where the block normalises (before the branch,
after the add, or nowhere), its ``forward`` (the sublayer's equation, see
:mod:`depthlens.train.wiring`) and its numbers as functions of ℓ (the 1-based block index)
and L (the depth): a scale on the normalised branch input, a scale on the branch output, a
multiplier on the skip path and an init gain for the branch weights. The lab model, its
Llama export, ``depthlens train --scheme``, ``study depth`` and the table of docs/TRAIN.md
all read the record, so a new scheme is one :func:`register_scheme` call plus its test (see
docs/ADDING.md). N is RMSNorm throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from depthlens.errors import DepthlensError
from depthlens.registry import Registry
from depthlens.train.wiring import WIRINGS, NormPlace, Wiring, gated, post_norm, pre_norm

if TYPE_CHECKING:
    import torch


def _one(depth: int) -> float:
    return 1.0


def _one_at(ell: int, depth: int) -> float:
    return 1.0


@dataclass(frozen=True)
class Scheme:
    """One residual scheme: the block formula, its forward and the constants it needs.

    ``norm``: where the sublayer normalises (it gets an RMSNorm, or a ReZero gate for
    ``"none"``); ``forward(sub, h, *args)``: the sublayer's equation
    (:mod:`depthlens.train.wiring`). The numbers: ``input_scale(ℓ, L)``, g on N(h) before
    the branch; ``branch_scale(L)``, c on the branch output; ``skip_scale(L)``, α on the skip
    path; ``init_gain(L)``, β on the initial v, o and MLP weights. ``exports_as_llama``:
    inference is exactly a ``LlamaForCausalLM`` once the numbers are folded into the
    weights (only the standard pre-norm and no-norm forwards are).
    """

    name: str
    formula: str
    norm: NormPlace
    forward: Wiring
    paper: str
    exports_as_llama: bool
    constants: str = ""  # the constants in words, for the docs table
    input_scale: Callable[[int, int], float] = _one_at
    branch_scale: Callable[[int], float] = _one
    skip_scale: Callable[[int], float] = _one
    init_gain: Callable[[int], float] = _one

    def to_dict(self) -> dict[str, object]:
        """JSON form written into results."""
        return {
            "name": self.name,
            "formula": self.formula,
            "norm": self.norm,
            "paper": self.paper,
            "exports_as_llama": self.exports_as_llama,
        }


def _check(s: Scheme) -> None:
    if s.norm not in WIRINGS:
        raise RuntimeError(f"scheme {s.name!r}: norm must be one of {sorted(WIRINGS)}")
    if s.exports_as_llama and (s.norm == "post" or s.forward is not WIRINGS[s.norm]):
        raise RuntimeError(
            f"scheme {s.name!r}: only the standard pre-norm or no-norm forward folds into Llama"
        )


#: The scheme of ``depthlens train`` without ``--scheme`` (and of a lab config without one).
DEFAULT_SCHEME = "pre-ln"

SCHEMES: Registry[Scheme] = Registry(
    "--scheme",
    check=_check,
    columns=(
        (
            "`--scheme`",
            lambda s: f"`{s.name}`" + (" (default)" if s.name == DEFAULT_SCHEME else ""),
        ),
        ("sublayer h → h′", lambda s: s.formula),
        ("constants", lambda s: s.constants),
        ("saved as", lambda s: "`LlamaForCausalLM`" if s.exports_as_llama else "`LabForCausalLM`"),
        ("paper", lambda s: s.paper),
    ),
)


def register_scheme(scheme: Scheme) -> Scheme:
    """Add ``scheme`` to :data:`SCHEMES` and return it."""
    return SCHEMES.register(scheme)


register_scheme(
    Scheme(
        "pre-ln",
        "h + F(N(h))",
        "pre",
        pre_norm,
        "GPT-2 / Llama (pre-norm; Xiong et al. 2020)",
        True,
    )
)
register_scheme(
    Scheme(
        "post-ln",
        "N(h + F(h))",
        "post",
        post_norm,
        "Vaswani et al. 2017, *Attention Is All You Need*",
        False,
    )
)
register_scheme(
    Scheme(
        "lns",
        "h + F(N(h) / √ℓ)",
        "pre",
        pre_norm,
        "Sun et al. 2025, *The Curse of Depth in LLMs* (LayerNorm Scaling)",
        True,
        constants="1/√ℓ on both sublayers of block ℓ",
        input_scale=lambda ell, depth: 1.0 / math.sqrt(ell),
    )
)
register_scheme(
    Scheme(
        "deepnorm",
        "N(α·h + F(h))",
        "post",
        post_norm,
        "Wang et al. 2022, *DeepNet*",
        False,
        constants="α = (2L)^¼; at init the weights of v, o and the three MLP matrices are "
        "multiplied by β = (8L)^−¼ (q, k keep gain 1)",
        skip_scale=lambda depth: (2.0 * depth) ** 0.25,
        init_gain=lambda depth: (8.0 * depth) ** -0.25,
    )
)
register_scheme(
    Scheme(
        "rezero",
        "h + α·F(h)",
        "none",
        gated,
        "Bachlechner et al. 2020, *ReZero is All You Need*",
        True,
        constants="α learned, initialised 0, one per sublayer; no norm anywhere (no final norm "
        "either)",
    )
)
register_scheme(
    Scheme(
        "scaled",
        "h + F(N(h)) / √L",
        "pre",
        pre_norm,
        "depth-µP: Yang et al. 2023 (*Tensor Programs VI*), Bordelon et al. 2023",
        True,
        constants="1/√L on every branch output",
        branch_scale=lambda depth: 1.0 / math.sqrt(depth),
    )
)


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name``, or a did-you-mean error."""
    return SCHEMES.get(name)


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
    import torch

    if p <= 0.0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= p  # (B, 1, 1)
    return x * keep.to(x.dtype) / (1.0 - p)
