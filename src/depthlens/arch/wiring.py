"""How a family's sublayers are wired into the residual stream, resolved from the config.

A block computes h_{l+1} = h_l + a_l + m_l for every family depthlens supports; what differs
is where the norms sit, whether the MLP reads h_l or h_l + a_l, whether each branch is
scaled before the add, and what the head does to the logits. :class:`Wiring` holds the
resolved values of one loaded model; the static half (fixed facts and the names of the
config attributes that hold the rest) lives on :class:`~depthlens.arch.layout.ArchSpec`;
:mod:`depthlens.arch.binding` resolves one against a loaded model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from depthlens.errors import UnsupportedArchitectureError

#: Where the norms sit in a block.
#: "pre": x + f(norm(x)) (Llama, GPT-2, ...). "sandwich": x + post_norm(f(...)), the
#: sublayer's output is normalised before the add (Gemma 2/3 with pre-norms too, OLMo 2
#: without them). "post": norm(x + f(x)), the norm follows the add (BERT, RoBERTa).
NormPlacement = Literal["pre", "sandwich", "post"]

#: Config attributes that change what a block adds or what the head outputs. A spec that
#: does not read one of them cannot describe a model that sets it to a non-neutral value.
WIRING_CONFIG_KEYS: dict[str, Any] = {
    "residual_multiplier": 1.0,  # Granite: h + mult·f(h)
    "logits_scaling": 1.0,  # Granite: logits / scale
    "final_logit_softcapping": None,  # Gemma 2/3: cap·tanh(z/cap)
    "use_parallel_residual": False,  # GPT-NeoX
    "parallel_attn": False,  # Falcon-style parallel blocks
}


@dataclass(frozen=True)
class Wiring:
    """The resolved wiring of one loaded model (all values read from its config)."""

    norm: NormPlacement
    parallel: bool  # attention and MLP both read h_l (GPT-NeoX parallel residual, Phi)
    branch_multiplier: float = 1.0  # each branch is multiplied by this before the add
    logit_scale: float = 1.0  # the head's logits are divided by this
    logit_softcap: float | None = None  # then z := cap·tanh(z/cap)

    def __post_init__(self) -> None:
        for name in ("branch_multiplier", "logit_scale"):
            v = getattr(self, name)
            if not (isinstance(v, float) and math.isfinite(v) and v != 0.0):
                raise UnsupportedArchitectureError(
                    f"the model's {name} is {v!r}; it must be a finite non-zero number "
                    "(check the model's config.json)"
                )
        cap = self.logit_softcap
        if cap is not None and not (math.isfinite(cap) and cap > 0):
            raise UnsupportedArchitectureError(
                f"the model's final logit soft-cap is {cap!r}; it must be a positive number"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


def config_float(cfg: Any, key: str | None) -> float | None:
    """``cfg.key`` as a float; None when ``key`` is None or the attribute missing or None."""
    v = getattr(cfg, key, None) if key is not None else None
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise UnsupportedArchitectureError(
            f"config attribute '{key}' is {v!r}, not a number; check the model's config.json"
        ) from exc


def is_neutral(key: str, value: Any) -> bool:
    """Whether config ``key`` = ``value`` leaves the plain pre-norm wiring unchanged."""
    return value is None or bool(value == WIRING_CONFIG_KEYS[key])


def model_configs(model: nn.Module) -> tuple[Any, Any]:
    """(the model's own config, its text config); either may be None."""
    cfg = getattr(model, "config", None)
    get_text = getattr(cfg, "get_text_config", None)
    return cfg, (get_text() if callable(get_text) else cfg)
