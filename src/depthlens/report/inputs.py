"""The result JSONs a report accepts, read into a few plain shapes for drawing.

Results of depthlens commands (compare, skip, think) are read through their typed classes
(``CompareResult``, ``SkipResult``, ``ThinkResult``); plans and benchmark rows, whose
writers vary, are read defensively. Malformed input is a one-line :class:`DepthlensError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from depthlens.causal.skip import SkipResult
from depthlens.causal.think import ThinkResult
from depthlens.errors import DepthlensError
from depthlens.evaluate.compare import CompareResult, CompareRow
from depthlens.metrics.catalog.lens import PREDICTION_DEPTH
from depthlens.metrics.catalog.residual import ANGULAR_DISTANCE
from depthlens.profiling.result import Profile
from depthlens.results import Enveloped, read_json

_E = TypeVar("_E", bound=Enveloped)

QUALITY_KINDS = ("depthlens.prune_quality", "depthlens.bench.prune_quality")
# A plan, or a pruned model's depthlens.json: both name the removed blocks and the method.
PLAN_KINDS = ("depthlens.cut_plan", "depthlens.plan", "depthlens.pruned")
RESULT_KINDS = (
    "depthlens.compare",
    *QUALITY_KINDS,
    *PLAN_KINDS,
    "depthlens.skip",
    "depthlens.think",
)


@dataclass(frozen=True)
class CutRow:
    """One pruned (or original, n = 0) model's measured quality and speed."""

    method: str
    n: int
    ppl: float | None = None
    prefill_speedup: float | None = None
    decode_speedup: float | None = None
    ideal_speedup: float | None = None
    label: str = ""
    # 95% interval of the median ratio and the verdict (evaluate.speed), when measured so.
    prefill_ci95: tuple[float, float] | None = None
    decode_ci95: tuple[float, float] | None = None
    prefill_verdict: str | None = None
    decode_verdict: str | None = None


@dataclass(frozen=True)
class Plan:
    """The blocks a plan (or prune result) removes."""

    method: str
    removed: tuple[int, ...]
    start: int | None = None
    n: int | None = None


@dataclass
class ReportInputs:
    """Everything a report draws, gathered from the profile and the extra results."""

    cuts: list[CutRow] = field(default_factory=list)
    plan: Plan | None = None
    skip_out_kl: list[float | None] | None = None
    skip_future: list[list[float | None]] | None = None
    think_tokens: list[dict[str, Any]] | None = None
    sources: list[str] = field(default_factory=list)


def num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    f = num(v)
    return int(f) if f is not None and f == int(f) else None


def _num_list(v: Any) -> list[float | None] | None:
    if not isinstance(v, list) or not v:
        return None
    return [num(x) for x in v]


def _matrix(v: Any) -> list[list[float | None]] | None:
    if not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v):
        return None
    return [[num(x) for x in r] for r in v]


def _pair(v: Any) -> tuple[float, float] | None:
    if not isinstance(v, list | tuple) or len(v) != 2:
        return None
    a, b = num(v[0]), num(v[1])
    return (a, b) if a is not None and b is not None else None


def _speed_stats(r: CompareRow) -> dict[str, Any]:
    """The interval and verdict of each speed ratio, where the comparison timed them."""
    out: dict[str, Any] = {}
    for k in ("prefill", "decode"):
        out[f"{k}_ci95"] = _pair(getattr(r, f"{k}_ci95"))
        v = getattr(r, f"{k}_verdict")
        out[f"{k}_verdict"] = str(v)[:40] if isinstance(v, str) else None
    return out


def _compare_rows(res: CompareResult) -> list[CutRow]:
    rows = []
    for m in res.models:
        n = m.n_removed
        method = str(m.method or ("original" if n == 0 else m.label or "?"))
        rows.append(
            CutRow(
                method=method,
                n=n,
                ppl=num(m.ppl),
                prefill_speedup=num(m.prefill_speedup),
                decode_speedup=num(m.decode_speedup),
                ideal_speedup=num(m.ideal_speedup),
                label=str(m.label or m.ref or ""),
                **_speed_stats(m),
            )
        )
    return rows


def _row_speed_stats(m: dict[str, Any]) -> dict[str, Any]:
    """As :func:`_speed_stats`, for a benchmark row (a plain dict)."""
    out: dict[str, Any] = {}
    for k in ("prefill", "decode"):
        out[f"{k}_ci95"] = _pair(m.get(f"{k}_ci95"))
        v = m.get(f"{k}_verdict")
        out[f"{k}_verdict"] = str(v)[:40] if isinstance(v, str) else None
    return out


def _quality_rows(rows: list[Any]) -> list[CutRow]:
    out = []
    for r in rows:
        if not isinstance(r, dict) or _int(r.get("n")) is None:
            continue
        ppl = next((num(r[k]) for k in ("ppl", "ppl_wiki", "wiki_ppl") if num(r.get(k))), None)
        out.append(
            CutRow(
                method=str(r.get("method") or "?"),
                n=int(r["n"]),
                ppl=ppl,
                prefill_speedup=num(r.get("prefill_speedup")),
                decode_speedup=num(r.get("decode_speedup")),
                ideal_speedup=num(r.get("ideal_speedup")),
                **_row_speed_stats(r),
            )
        )
    return out


def _plan(d: dict[str, Any]) -> Plan:
    removed = tuple(int(x) for x in d.get("removed") or [] if _int(x) is not None)
    start, n = _int(d.get("start")), _int(d.get("n"))
    if start is None and removed and list(removed) == list(range(removed[0], removed[-1] + 1)):
        start, n = removed[0], len(removed)
    return Plan(method=str(d.get("method") or "?"), removed=removed, start=start, n=n)


def _typed(cls: type[_E], d: dict[str, Any], name: str) -> _E:
    """``d`` read into its typed result; a malformed one is a one-line error naming ``name``."""
    try:
        return cls.from_dict(d)
    except DepthlensError as exc:
        raise DepthlensError(f"{name}: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        what = cls.KIND.removeprefix("depthlens.")
        raise DepthlensError(f"{name}: malformed {what} JSON ({exc})") from exc


def _add_causal(inp: ReportInputs, d: dict[str, Any], name: str) -> None:
    """Take a skip sweep's or a think result's drawable fields (a file or Profile.extra)."""
    if d.get("kind") == SkipResult.KIND:
        skip = _typed(SkipResult, d, name)
        kl, fut = _num_list(skip.skip_out_kl_mean), _matrix(skip.skip_future)
        inp.skip_out_kl = kl if kl is not None else inp.skip_out_kl
        inp.skip_future = fut if fut is not None else inp.skip_future
    elif d.get("kind") == ThinkResult.KIND:
        toks = _typed(ThinkResult, d, name).per_token
        if isinstance(toks, list) and toks and all(isinstance(t, dict) for t in toks):
            inp.think_tokens = toks


def add_result(inp: ReportInputs, obj: Any, name: str) -> None:
    """Merge one parsed result JSON into ``inp``; unknown kinds are an error."""
    if isinstance(obj, list):  # bench/results/prune_quality.json: a bare list of rows
        rows = _quality_rows(obj)
        if not rows:
            raise DepthlensError(f"{name}: a list, but not of rows with 'method' and 'n'")
        inp.cuts.extend(rows)
    elif not isinstance(obj, dict):
        raise DepthlensError(f"{name}: expected a JSON object, got {type(obj).__name__}")
    else:
        kind = obj.get("kind")
        if kind == CompareResult.KIND:
            inp.cuts.extend(_compare_rows(_typed(CompareResult, obj, name)))
        elif kind in QUALITY_KINDS:
            inp.cuts.extend(_quality_rows(obj.get("rows") or []))
        elif kind in PLAN_KINDS:
            inp.plan = _plan(obj)
        elif kind in (SkipResult.KIND, ThinkResult.KIND):
            _add_causal(inp, obj, name)
        elif kind == "depthlens.profile":
            raise DepthlensError(
                f"{name}: a second profile; a report shows one profile (pass it first)"
            )
        else:
            shown = repr(kind)[:60] if kind is not None else "none"
            raise DepthlensError(
                f"{name}: unknown result kind {shown}; expected one of {', '.join(RESULT_KINDS)}"
            )
    inp.sources.append(name)


def gather_inputs(
    profile: Profile, results: list[Any], names: list[str] | None = None
) -> ReportInputs:
    """Collect the drawable data from ``profile.extra`` and the extra results."""
    inp = ReportInputs()
    extra = profile.extra if isinstance(profile.extra, dict) else {}
    for key in ("causal", "think", "skip"):
        if isinstance(extra.get(key), dict):
            _add_causal(inp, extra[key], f"the profile's extra[{key!r}]")
    from depthlens.report.matching import check_result_model

    for i, obj in enumerate(results):
        name = names[i] if names else f"result {i + 1}"
        check_result_model(profile, obj, name)  # never draw another model's result here
        add_result(inp, obj, name)
    return inp


def load_files(paths: list[str | Path]) -> tuple[Profile, list[Any], list[str]]:
    """Read the profile (first path) and the other results, with one-line errors."""
    if not paths:
        raise DepthlensError("give a profile JSON (from `depthlens profile -o`)")
    first = read_json(paths[0])
    try:
        profile = Profile.from_dict(first)
    except DepthlensError as exc:
        raise DepthlensError(f"{paths[0]}: {exc}") from exc
    except TypeError as exc:
        raise DepthlensError(f"{paths[0]}: malformed profile JSON ({exc})") from exc
    check_profile(profile, str(paths[0]))
    return profile, [read_json(p) for p in paths[1:]], [str(p) for p in paths[1:]]


def sanitize(p: Profile) -> Profile:
    """A copy whose numbers are floats or None and whose header fields are dicts."""
    d = p.to_dict()
    depth, angular = PREDICTION_DEPTH.name, ANGULAR_DISTANCE.name  # their keys in the JSON
    for key in ("model", "arch", "data", "options", "tokens", depth, "summary"):
        if not isinstance(d.get(key), dict):
            d[key] = {}
    d["metrics"] = {str(k): [num(x) for x in v] for k, v in d["metrics"].items()}
    d[angular] = [[num(x) for x in r] for r in d[angular]]
    pdm = d[depth]
    pdm["mean"] = num(pdm.get("mean"))
    hist = pdm.get("histogram")
    pdm["histogram"] = [int(num(x) or 0) for x in hist] if isinstance(hist, list) else []
    if not isinstance(d.get("extra"), dict):
        d["extra"] = {}
    return Profile.from_dict(d)


def check_profile(p: Profile, name: str) -> None:
    """The fields every plot relies on have the right shapes."""
    try:
        n_layers = p.n_layers
    except (KeyError, TypeError, ValueError) as exc:
        raise DepthlensError(f"{name}: profile lacks model.num_layers") from exc
    if not isinstance(p.metrics, dict) or not all(
        isinstance(v, list) and len(v) in (n_layers, n_layers + 1) for v in p.metrics.values()
    ):
        raise DepthlensError(
            f"{name}: profile metrics must be lists of {n_layers} (or {n_layers + 1}) values"
        )
    if not isinstance(p.angular_distance, list) or not all(
        isinstance(r, list) for r in p.angular_distance
    ):
        raise DepthlensError(f"{name}: profile angular_distance must be a list of lists")
