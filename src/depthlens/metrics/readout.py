"""Which lens reads the residual states: ``--lens logit`` or another registered readout.

The logit lens is declared here, beside the lens metrics; other readouts (the tuned lens,
``tuned:DIR``) are records that their own package registers, so the profile, the causal
analyses and early exit pick a lens by name without importing the package that trains it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.metrics.lens import Lens, Readout
from depthlens.registry import Registry, unknown_choice

#: Modules that register readouts beyond the logit lens (imported before each lookup).
READOUT_MODULES: list[str] = ["depthlens.tuned.lens"]


@dataclass(frozen=True)
class ReadoutSource:
    """One kind of lens: ``--lens NAME`` or ``--lens NAME:ARG``."""

    name: str
    summary: str
    #: Validate ``ARG`` before any model is loaded (raise a user-facing error).
    check: Callable[[str], None]
    #: (loaded model, ARG) -> the readout and a JSON record of it.
    load: Callable[[Any, str], tuple[Readout, dict[str, Any]]]
    usage: str = ""  # how the choice is spelled in --lens, e.g. "tuned:DIR"


def _load_plugins() -> None:
    for mod in READOUT_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


READOUTS: Registry[ReadoutSource] = Registry(
    "--lens",
    load=_load_plugins,
    columns=(("--lens", lambda r: f"`{r.usage or r.name}`"), ("reads", lambda r: r.summary)),
)


def _logit(lm: Any, arg: str) -> tuple[Readout, dict[str, Any]]:
    return Lens.of(lm.model, lm.arch), {"kind": "logit"}


READOUTS.register(
    ReadoutSource(
        "logit", "softmax(U · final_norm(h)): the model's own head", lambda arg: None, _logit
    )
)


def _split(spec: str) -> tuple[ReadoutSource, str]:
    """(the source, its argument) of ``NAME`` or ``NAME:ARG``; one did-you-mean error else."""
    name, colon, arg = spec.partition(":")
    usages = {r.usage or r.name: r for r in READOUTS.values()}
    source = READOUTS.get(name) if name in READOUTS else None
    takes_arg = source is not None and ":" in (source.usage or "")
    if source is None or takes_arg != bool(colon) or (takes_arg and not arg):
        raise DepthlensError(unknown_choice("--lens", spec, usages))
    return source, arg


def check_lens_arg(spec: str) -> None:
    """Fail fast on ``--lens`` before any model is loaded."""
    if spec == "logit":  # the default: no plugin (and its imports) needed to accept it
        return
    source, arg = _split(spec)
    source.check(arg)


def readout_for(lm: Any, spec: str = "logit") -> tuple[Readout, dict[str, Any]]:
    """The lens named by ``--lens`` (``logit`` or ``tuned:DIR``) for the loaded model ``lm``."""
    if spec == "logit":
        return _logit(lm, "")
    source, arg = _split(spec)
    source.check(arg)
    return source.load(lm, arg)
