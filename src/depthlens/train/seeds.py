"""Study figures over seeds: mean ± 95% interval, and which scheme differences separate.

Each (scheme, depth) is trained once per seed; a figure of the study is the mean over
seeds with a Student-t 95% interval (mean ± t_{0.975, n−1} · s / √n). Two schemes are
said to differ at a depth only when their intervals do not overlap — a conservative
rule (non-overlap of two 95% intervals implies p < 0.05 and then some), chosen because
it needs no pairing or variance assumption beyond each interval's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the normal 1.96 is within 2%.
T975 = tuple(
    float(t)
    for t in (
        "12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 "
        "2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086 "
        "2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042"
    ).split()
)


@dataclass(frozen=True)
class Interval:
    """Mean over seeds and its 95% interval (lo = hi = mean with a single seed)."""

    mean: float
    lo: float
    hi: float
    n: int

    def separates(self, other: Interval) -> bool:
        """Whether the two intervals do not overlap (and both have ≥ 2 seeds)."""
        return self.n > 1 and other.n > 1 and (self.hi < other.lo or other.hi < self.lo)


def t975(df: int) -> float:
    """The two-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    return T975[df - 1] if 1 <= df <= len(T975) else 1.96


def interval(values: Sequence[float | None]) -> Interval | None:
    """Mean ± t·s/√n of the non-missing ``values`` (None when there are none)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def _half_means(rel: Sequence[float | None] | None) -> tuple[float | None, float | None]:
    """Mean relative removal cost over the first and the second half of the blocks."""
    vals = list(rel or [])
    if len(vals) < 2:
        return None, None
    h = len(vals) // 2

    def mean(xs: Sequence[float | None]) -> float | None:
        ok = [x for x in xs if x is not None]
        return sum(ok) / len(ok) if ok else None

    return mean(vals[:h]), mean(vals[h:])


def run_figures(row: dict[str, Any]) -> dict[str, float | None]:
    """The scalar figures of one run that the study compares across seeds."""
    first, second = _half_means(row.get("removal_cost_rel"))
    rms = [v for v in (row.get("resid_rms") or []) if v is not None]
    growth = rms[-1] / rms[1] if len(rms) > 2 and rms[1] > 0 else None
    return {
        "eval_loss": row.get("eval_loss"),
        "unused_depth": row.get("unused_depth"),
        "removal_first_half": first,
        "removal_second_half": second,
        "rms_growth": growth,
    }


FIGURES = ("eval_loss", "unused_depth", "removal_first_half", "removal_second_half", "rms_growth")


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (scheme, depth): every figure as mean and 95% interval over seeds."""
    groups: dict[tuple[str, int], list[dict[str, float | None]]] = {}
    for r in rows:
        if r.get("diverged"):
            continue
        groups.setdefault((str(r["scheme"]), int(r["depth"])), []).append(run_figures(r))
    out = []
    for (scheme, depth), figs in groups.items():
        entry: dict[str, Any] = {"scheme": scheme, "depth": depth, "n_seeds": len(figs)}
        for k in FIGURES:
            iv = interval([f[k] for f in figs])
            entry[k] = asdict(iv) if iv is not None else None
        out.append(entry)
    return out


def differences(summary: Sequence[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Per depth and figure: scheme ``a`` against ``b``, significant only if intervals separate."""
    by = {(e["scheme"], e["depth"]): e for e in summary}
    out = []
    for depth in sorted({d for s, d in by if s == a} & {d for s, d in by if s == b}):
        for k in FIGURES:
            ia, ib = by[(a, depth)].get(k), by[(b, depth)].get(k)
            if ia is None or ib is None:
                continue
            va, vb = Interval(**ia), Interval(**ib)
            out.append(
                {
                    "depth": depth,
                    "figure": k,
                    a: va.mean,
                    b: vb.mean,
                    "significant": va.separates(vb),
                }
            )
    return out


def fmt_interval(iv: dict[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    """'5.005 ± 0.021' (half-width of the 95% interval); '–' when missing."""
    if iv is None:
        return "–"
    half = (iv["hi"] - iv["lo"]) / 2 * scale
    m = iv["mean"] * scale
    return f"{m:.{digits}f}" if iv["n"] < 2 else f"{m:.{digits}f} ± {half:.{digits}f}"
