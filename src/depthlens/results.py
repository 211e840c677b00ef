"""One envelope for every result depthlens writes.

Profiles, skip sweeps, reasoning scores, comparisons, plans, pruned-model manifests, lens
and training runs all carry the same header: what kind of result, which model (its
identity and a fingerprint), which data, every option, how many tokens, when, and which
version and schema wrote it. It is written once here; each result adds its own payload.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from depthlens._version import SCHEMA_VERSION, __version__
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_json, json_msg


def now_utc() -> str:
    """ISO timestamp of the moment a result is made (the one field that differs on reruns)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def model_fingerprint(identity: dict[str, Any], *, weights: bool = True) -> str:
    """A short hash of what makes two models the same network (config, size, class, weights).

    The reference string and the path are left out: the same checkpoint loaded from
    another folder is the same model; a cut model (other layer count or weights count)
    is not, and neither is a fine-tune of the same config (its ``weights`` digest, see
    :mod:`depthlens.models.digest`). ``weights=False``, or an identity written before the
    digest was recorded, gives the config-only fingerprint.
    """
    names = ("class", "model_type", "num_layers", "hidden_size", "n_params", "config")
    keep = {k: identity.get(k) for k in names}
    if weights and identity.get("weights"):
        keep["weights"] = identity["weights"]
    cfg = dict(keep.get("config") or {})
    for volatile in ("_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        cfg.pop(volatile, None)
    keep["config"] = cfg
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Envelope:
    """The header shared by every result."""

    kind: str  # "depthlens.profile", "depthlens.skip", …
    model: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    created: str = field(default_factory=now_utc)
    version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of the model this result describes."""
        return str(self.model.get("fingerprint") or model_fingerprint(self.model))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], kind: str) -> Envelope:
        """Read the header of a result JSON, refusing other kinds and newer schemas."""
        check_header(d, kind)
        return cls(
            kind=d["kind"],
            model=dict(d.get("model") or {}),
            data=dict(d.get("data") or {}),
            options=dict(d.get("options") or {}),
            tokens=dict(d.get("tokens") or {}),
            created=str(d.get("created", "")),
            version=str(d.get("version", "")),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
        )


ENVELOPE_KEYS = frozenset(Envelope.__dataclass_fields__)


def check_header(d: Any, kind: str) -> None:
    """Refuse JSON that is not ``kind`` (``depthlens.X`` or ``X``) or is of a newer schema."""
    want = kind if kind.startswith("depthlens.") else f"depthlens.{kind}"
    what = want.removeprefix("depthlens.")
    if not isinstance(d, dict) or d.get("kind") != want:
        got = d.get("kind") if isinstance(d, dict) else type(d).__name__
        raise DepthlensError(f"not a depthlens {what} JSON (kind is {got!r}, expected '{want}')")
    if int(d.get("schema_version", 0)) > SCHEMA_VERSION:
        raise DepthlensError(
            f"{what} schema {d['schema_version']} is newer than this depthlens "
            f"({SCHEMA_VERSION}); upgrade depthlens"
        )


def check_same_model(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """Refuse to combine results of two different models (by fingerprint, not by name).

    Both sides with a weights digest: config and weights must match. A side written
    before digests were recorded is held to its config only, with a warning saying so.
    """
    with_weights = bool(a.get("weights")) and bool(b.get("weights"))
    fa, fb = model_fingerprint(a, weights=False), model_fingerprint(b, weights=False)
    if fa != fb:
        raise DepthlensError(
            f"{what} describe different models ({a.get('ref')!r}, {a.get('num_layers')} "
            f"blocks vs {b.get('ref')!r}, {b.get('num_layers')} blocks; fingerprints {fa} vs "
            f"{fb}); use results of the same model"
        )
    if with_weights and a["weights"] != b["weights"]:
        raise DepthlensError(
            f"{what} describe different models: the same configuration but other weights "
            f"({a.get('ref')!r} weights {str(a['weights'])[:12]} vs {b.get('ref')!r} weights "
            f"{str(b['weights'])[:12]}; a fine-tune or an edited copy is another network); "
            "use results of the same model"
        )
    if not with_weights:
        _warn_config_only(what, a if not a.get("weights") else b)


_WARNED: set[str] = set()


def _warn_config_only(what: str, side: dict[str, Any]) -> None:
    """Say once per process that a match was checked on the config alone."""
    if what in _WARNED:
        return
    _WARNED.add(what)
    print(
        f"depthlens: warning: {what}: {side.get('ref')!r} carries no weights digest (written "
        "before depthlens recorded one, or its weights were offloaded), so its identity is "
        "config-only and a fine-tune of the same config would pass; rerun the command that "
        "wrote it to check the weights too",
        file=sys.stderr,
    )


def clean_json(obj: Any) -> Any:
    """Make ``obj`` valid JSON: NaN and ±inf become null (JSON has neither)."""
    if isinstance(obj, float):
        return None if (math.isnan(obj) or math.isinf(obj)) else obj
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    return obj


def write_result(path: str | Path, envelope: Envelope, payload: dict[str, Any]) -> None:
    """Write ``envelope`` + ``payload`` atomically as strict JSON (no NaN/Infinity)."""
    clash = ENVELOPE_KEYS & set(payload)
    if clash:
        raise RuntimeError(f"payload keys {sorted(clash)} would overwrite the envelope")
    atomic_write_json(path, clean_json({**envelope.to_dict(), **payload}))


def read_json(path: str | Path) -> Any:
    """Load JSON with one-line errors for the usual failures."""
    p = Path(path)
    if p.is_dir():
        raise DepthlensError(f"{p} is a folder, not a result JSON file")
    if not p.is_file():
        raise DepthlensError(f"file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DepthlensError(f"{p} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise DepthlensError(
            f"{p} is not valid JSON: {json_msg(exc)} at line {exc.lineno}"
        ) from exc


def read_result(path: str | Path, kind: str) -> tuple[Envelope, dict[str, Any]]:
    """Read a result written by :func:`write_result`: (envelope, payload)."""
    d = read_json(path)
    env = Envelope.from_dict(d, kind)
    return env, {k: v for k, v in d.items() if k not in ENVELOPE_KEYS}


_R = TypeVar("_R", bound="Enveloped")


class Enveloped:
    """Mixin of a frozen dataclass result: one ``envelope`` field, the rest is its payload.

    The JSON form is the envelope's keys beside the payload's (flat), so readers of the
    header need not know the result. ``model``, ``data``, ``options``, ``tokens`` and
    ``created`` read through to the envelope.
    """

    KIND: ClassVar[str]  # "depthlens.X"
    envelope: Envelope

    @property
    def model(self) -> dict[str, Any]:
        """Identity of the model the result describes."""
        return self.envelope.model

    @property
    def data(self) -> dict[str, Any]:
        """Identity of the data."""
        return self.envelope.data

    @property
    def options(self) -> dict[str, Any]:
        """Every option of the run."""
        return self.envelope.options

    @property
    def tokens(self) -> dict[str, int]:
        """Token counts behind the numbers."""
        return self.envelope.tokens

    @property
    def created(self) -> str:
        """When the result was made."""
        return self.envelope.created

    def payload(self) -> dict[str, Any]:
        """Every dataclass field but the envelope, as plain JSON-able values."""
        names = [f.name for f in fields(self) if f.name != "envelope"]  # type: ignore[arg-type]
        return {k: _plain(getattr(self, k)) for k in names}

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON form: envelope and payload side by side."""
        return dict(clean_json({**self.envelope.to_dict(), **self.payload()}))

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (:func:`write_result`)."""
        write_result(path, self.envelope, self.payload())

    @classmethod
    def from_dict(cls: type[_R], d: dict[str, Any]) -> _R:
        """Inverse of :meth:`to_dict`, refusing other kinds and newer schemas."""
        env = Envelope.from_dict(d, cls.KIND)
        return cls._from_parts(env, {k: v for k, v in d.items() if k not in ENVELOPE_KEYS})

    @classmethod
    def load(cls: type[_R], path: str | Path) -> _R:
        """Read a result JSON written by :meth:`save`."""
        env, payload = read_result(path, cls.KIND)
        return cls._from_parts(env, payload)

    @classmethod
    def _from_parts(cls: type[_R], env: Envelope, payload: dict[str, Any]) -> _R:
        own = [f for f in fields(cls) if f.name != "envelope"]  # type: ignore[arg-type]
        missing = [
            f.name
            for f in own
            if f.name not in payload and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            what = cls.KIND.removeprefix("depthlens.")
            raise DepthlensError(f"{what} JSON lacks {', '.join(missing)}")
        names = {f.name for f in own}
        kwargs = {k: v for k, v in payload.items() if k in names}
        return cls(envelope=env, **kwargs)  # type: ignore[call-arg]  # a dataclass subclass


def _plain(v: Any) -> Any:
    return asdict(v) if hasattr(v, "__dataclass_fields__") else v
