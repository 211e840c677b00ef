"""The versioned result of a profile, and its JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from depthlens.errors import DepthlensError
from depthlens.results import Envelope, Enveloped, check_same_model


@dataclass(frozen=True)
class ProfileOptions:
    """Every choice SPEC leaves open, with its default; all of it goes into the output."""

    lens: bool = True
    lens_at: Literal["output", "input"] = "output"
    lens_tokens: int | None = 2048
    lens_chunk: int | None = None  # tokens per lens block; None = sized from the vocabulary
    lens_kernel: Literal["auto", "compiled", "eager"] = "auto"
    lens_readout: str = "logit"  # "logit" or "tuned:DIR" (a depthlens.tuned lens folder)
    include_first_token: bool = False
    last_token_only: bool = False
    n_max: int | None = None  # angular distance span lengths 1..n_max; None = L // 2
    batch_size: int = 4
    seed: int = 0

    def validate(self) -> None:
        """Raise a user-facing error for out-of-range values."""
        if self.lens_at not in ("output", "input"):
            raise DepthlensError(f"--lens-at must be 'output' or 'input', got '{self.lens_at}'")
        if self.lens_tokens is not None and self.lens_tokens < 1:
            raise DepthlensError(f"--lens-tokens must be ≥ 1, got {self.lens_tokens}")
        if self.lens_kernel not in ("auto", "compiled", "eager"):
            raise DepthlensError(
                f"--lens-kernel must be auto, compiled or eager, got '{self.lens_kernel}'"
            )
        if self.batch_size < 1:
            raise DepthlensError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.lens_readout != "logit":
            from depthlens.metrics.readout import check_lens_arg  # the folder, before any load

            check_lens_arg(self.lens_readout)
        if self.n_max is not None and self.n_max < 1:
            raise DepthlensError(f"--n-max must be ≥ 1, got {self.n_max}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Profile(Enveloped):
    """Per-layer metrics of one model on one dataset (SPEC "One-pass metrics")."""

    envelope: Envelope
    arch: dict[str, Any]
    metrics: dict[str, list[float | None]]
    angular_distance: list[list[float | None]]  # [start block l][n - 1]
    prediction_depth: dict[str, Any]
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. causal analyses
    KIND: ClassVar[str] = "depthlens.profile"

    @property
    def n_layers(self) -> int:
        """Number of blocks profiled."""
        return int(self.model["num_layers"])

    def cheapest_span(self, n: int | None = None) -> tuple[int, int, float] | None:
        """(start, n, distance) of the n-block span with the smallest angular distance.

        Starts s ≥ 1 only (block 0 is never cut); ``n`` defaults to L // 8 (at least 1).
        """
        n = n or max(1, self.n_layers // 8)
        best: tuple[int, int, float] | None = None
        for s in range(1, min(self.n_layers, len(self.angular_distance))):
            row = self.angular_distance[s]
            d = row[n - 1] if n - 1 < len(row) else None
            if isinstance(d, int | float) and (best is None or d < best[2]):
                best = (s, n, float(d))
        return best

    def with_extra(self, name: str, result: Enveloped) -> Profile:
        """A copy with ``result`` (of the same model) stored under ``extra[name]``."""
        check_same_model(self.model, result.model, f"the profile and the {name} result")
        return dataclasses.replace(self, extra={**self.extra, name: result.to_dict()})


def check_profile_matches(profile: Profile, lm: Any) -> None:
    """Refuse a profile of another model (block count, hidden size or family differ).

    ``lm`` is a :class:`~depthlens.models.loading.LoadedModel`; a plan built from the
    wrong profile would select blocks that do not exist or mean something else.
    """
    got = profile.model
    want = {"num_layers": lm.num_layers, "family": lm.arch.family}
    hidden = getattr(getattr(lm.model, "config", None), "hidden_size", None)
    if hidden is not None and got.get("hidden_size") is not None:
        want["hidden_size"] = hidden
    bad = [f"{k} {got.get(k)!r} vs {v!r}" for k, v in want.items() if got.get(k) != v]
    if bad:
        raise DepthlensError(
            f"the profile is of another model ({got.get('ref')!r}: {'; '.join(bad)} in "
            f"{lm.ref!r}); profile this model first with `depthlens profile {lm.ref}`"
        )
