"""The versioned result of a profile, and its JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from depthlens._version import SCHEMA_VERSION, __version__
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_json


@dataclass(frozen=True)
class ProfileOptions:
    """Every choice SPEC leaves open, with its default; all of it goes into the output."""

    lens: bool = True
    lens_at: Literal["output", "input"] = "output"
    lens_tokens: int | None = 2048
    lens_chunk: int | None = None  # tokens per lens block; None = sized from the vocabulary
    lens_kernel: Literal["auto", "compiled", "eager"] = "auto"
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
        if self.n_max is not None and self.n_max < 1:
            raise DepthlensError(f"--n-max must be ≥ 1, got {self.n_max}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


def check_header(d: Any, what: str) -> None:
    """Refuse JSON that is not ``depthlens.<what>`` or whose schema is newer than ours."""
    kind = f"depthlens.{what}"
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise DepthlensError(f"not a depthlens {what} JSON (missing kind '{kind}')")
    if int(d.get("schema_version", 0)) > SCHEMA_VERSION:
        raise DepthlensError(
            f"{what} schema {d['schema_version']} is newer than this depthlens "
            f"({SCHEMA_VERSION}); upgrade depthlens"
        )


def clean_float(x: float) -> float | None:
    """JSON has no NaN: undefined values are written as null."""
    return None if (x is None or math.isnan(x) or math.isinf(x)) else float(x)


@dataclass(frozen=True)
class Profile:
    """Per-layer metrics of one model on one dataset (SPEC "One-pass metrics")."""

    model: dict[str, Any]
    arch: dict[str, Any]
    data: dict[str, Any]
    options: dict[str, Any]
    tokens: dict[str, int]
    metrics: dict[str, list[float | None]]
    angular_distance: list[list[float | None]]  # [start block l][n - 1]
    prediction_depth: dict[str, Any]
    summary: dict[str, Any]
    created: str  # the only field that differs between identical runs
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. causal analyses
    version: str = __version__
    schema_version: int = SCHEMA_VERSION
    kind: str = "depthlens.profile"

    @property
    def n_layers(self) -> int:
        """Number of blocks profiled."""
        return int(self.model["num_layers"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (deterministic key order is applied when saving)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict`, refusing other kinds and newer schemas."""
        check_header(d, "profile")
        names = {f.name for f in fields(cls)}
        missing = {"model", "metrics", "options"} - set(d)
        if missing:
            raise DepthlensError(f"profile JSON lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile JSON with a clear error for missing or malformed files."""
        return cls.from_dict(read_json(path))


def read_json(path: str | Path) -> Any:
    """Load JSON with one-line errors for the usual failures."""
    p = Path(path)
    if not p.is_file():
        raise DepthlensError(f"file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DepthlensError(f"{p} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise DepthlensError(f"{p} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc


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
