"""Plain-language sentences computed from the numbers (one under each plot).

Every function takes plain lists and returns text; nothing here draws or escapes (the
HTML layer escapes every caption, since method names come from result files).
"""

from __future__ import annotations

from collections.abc import Sequence

from depthlens.report.inputs import CutRow, Plan
from depthlens.spans import span_text

Values = Sequence[float | None]


def blocks(a: int, b: int) -> str:
    """'block 3' or 'blocks 3-7' (the one span notation, :mod:`depthlens.spans`)."""
    return f"block {a}" if a == b else f"blocks {span_text(a, b - a + 1)}"


def pct(x: float) -> str:
    """A share as a percentage with sensible precision."""
    text = f"{100 * x:.0f}" if abs(x) >= 0.1 else f"{100 * x:.1f}".removesuffix(".0")
    return text + "%"


def longest_run_below(values: Values, limit: float) -> tuple[int, int] | None:
    """(first, last) of the longest run of consecutive blocks with value < limit."""
    best: tuple[int, int] | None = None
    start = None
    for i, v in enumerate([*values, None]):
        if v is not None and v < limit:
            start = i if start is None else start
        elif start is not None:
            if best is None or i - 1 - start > best[1] - best[0]:
                best = (start, i - 1)
            start = None
    return best


def _argext(values: Values, largest: bool) -> int | None:
    idx = [i for i, v in enumerate(values) if v is not None]
    if not idx:
        return None
    return (max if largest else min)(idx, key=lambda i: values[i])  # type: ignore[arg-type,return-value]


def rel_contrib_caption(block: Values) -> str:
    """Where the blocks write least and most into the residual stream."""
    top = _argext(block, largest=True)
    if top is None:
        return "No relative-contribution values were recorded."
    text = f"Block {top} changes the residual stream most (‖Δ‖ = {pct(block[top] or 0)} of ‖h‖)."
    for limit in (0.05, 0.10, 0.20, 0.30, 0.50):
        run = longest_run_below(block, limit)
        if run and run[1] > run[0]:
            return f"{text} {blocks(*run).capitalize()} each change it by less than {pct(limit)}."
    return text + " No two consecutive blocks change it by less than 50%."


def cosine_caption(cos_block: Values, cos_attn: Values, cos_mlp: Values) -> str:
    """Which blocks and sublayers write against the stream (negative cosine)."""
    neg = [i for i, v in enumerate(cos_block) if v is not None and v < 0]
    sub = [
        f"{name} of block {i} ({v:+.2f})"
        for name, vals in (("attention", cos_attn), ("MLP", cos_mlp))
        for i, v in enumerate(vals)
        if v is not None and v < -0.1
    ]
    lo = _argext(cos_block, largest=False)
    if lo is None:
        return "No cosine values were recorded."
    text = (
        f"{len(neg)} of {len(cos_block)} blocks point against the stream they read "
        f"(negative cosine: they erase part of it); the lowest is block {lo} "
        f"(cos {cos_block[lo]:+.2f})."
        if neg
        else f"No block writes against the stream: cos(Δ, h) stays ≥ {cos_block[lo]:+.2f}."
    )
    if sub:
        more = f" and {len(sub) - 4} more" if len(sub) > 4 else ""
        text += f" Strongly erasing sublayers: {', '.join(sub[:4])}{more}."
    return text


def first_from(values: Values, ok: float, above: bool) -> int | None:
    """First block from which every later value is ≥ ok (above) or ≤ ok (below)."""
    first = None
    for i, v in enumerate(values):
        good = v is not None and (v >= ok if above else v <= ok)
        if good and first is None:
            first = i
        elif not good:
            first = None
    return first


def lens_caption(kl: Values, top1: Values) -> str:
    """Where the logit lens starts to read the final prediction."""
    if not kl or all(v is None for v in kl):
        return "The profile was run without the logit lens (--no-lens)."
    parts = []
    a = first_from(top1, 0.5, above=True)
    if a is not None:
        parts.append(
            f"From block {a} on, the logit lens agrees with the model's final top-1 prediction "
            f"on at least half of the tokens"
        )
    else:
        parts.append(
            "The logit lens agrees with the final top-1 prediction on under half of "
            "the tokens until the last block"
        )
    k = first_from(kl, 1.0, above=False)
    parts.append(
        f"KL to the output falls below 1 nat from block {k}"
        if k is not None
        else "KL to the output stays above 1 nat until the last block"
    )
    first_kl = next((v for v in kl if v is not None), None)
    if first_kl is not None:
        parts[-1] += f" (it starts at {first_kl:.2f} nats)"
    return "; ".join(parts) + "."


def depth_caption(hist: Sequence[int], mean: float | None, n_layers: int) -> str:
    """Summary of the prediction-depth histogram."""
    total = sum(hist)
    if not total:
        return "No prediction-depth histogram was recorded."
    acc, median = 0, 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= total / 2:
            median = i
            break
    late = sum(hist[n_layers:]) / total
    m = f"{mean:.1f}" if mean is not None else "?"
    return (
        f"On average a token's top-1 prediction settles after {m} of {n_layers} blocks; "
        f"half of the tokens have settled after {median} blocks, and {pct(late)} only settle "
        f"at the output of the last block."
    )


def norm_caption(norm: Values, growth: Values) -> str:
    """How much the residual stream grows, and where it jumps."""
    vals = [v for v in norm if v is not None]
    if len(vals) < 2:
        return "No residual norms were recorded."
    ratio = vals[-1] / vals[0]
    text = f"‖h‖ grows from {vals[0]:.3g} to {vals[-1]:.3g} (×{ratio:.1f}) over the stack."
    g = _argext(growth, largest=True)
    if g is not None:
        text += f" The largest single-block growth is at block {g} (×{growth[g]:.2f})."
    return text


def influence_caption(bi: Values, k: int) -> str:
    """ShortGPT's pick: the k blocks with the lowest influence."""
    idx = sorted((i for i, v in enumerate(bi) if v is not None), key=lambda i: bi[i])  # type: ignore[arg-type,return-value]
    if not idx:
        return "No block influence was recorded."
    low = sorted(idx[:k])
    return (
        f"Lowest influence (ShortGPT would remove these {len(low)} first): "
        f"blocks {', '.join(map(str, low))}; highest: block {idx[-1]} "
        f"(1 − cos = {bi[idx[-1]]:.3f})."
    )


def angular_caption(span: tuple[int, int, float] | None, plan: Plan | None, n_layers: int) -> str:
    """The cut marked on the heatmap and why."""
    if plan is not None:
        if plan.start is not None and plan.n:
            return (
                f"Marked: the plan's span ({plan.method}), "
                f"{blocks(plan.start, plan.start + plan.n - 1)}."
            )
        return (
            f"The plan ({plan.method}) removes blocks {', '.join(map(str, plan.removed))}, "
            "which are not one contiguous span; nothing is marked."
        )
    if span is None:
        return "No angular distances were recorded."
    s, n, d = span
    return (
        f"Marked: the cheapest span of n = {n} blocks (n = L/8 of {n_layers}), "
        f"{blocks(s, s + n - 1)}, angular distance {d:.3f} (0 = same direction, 1 = opposite)."
    )


def baseline_ppl(rows: Sequence[CutRow]) -> float | None:
    """Perplexity of the unpruned model, if a row has n = 0."""
    base = [r.ppl for r in rows if r.n == 0 and r.ppl is not None]
    return base[0] if base else None


def best_cut(rows: Sequence[CutRow], n: int | None = None) -> CutRow | None:
    """The lowest-perplexity cut with ``n`` blocks removed (default: the most measured)."""
    cut = [r for r in rows if r.n > 0 and r.ppl is not None]
    if not cut:
        return None
    if n is None or all(r.n != n for r in cut):
        n = max(r.n for r in cut)
    return min((r for r in cut if r.n == n), key=lambda r: r.ppl or 0.0)


def cut_cost(r: CutRow, base: float | None) -> str:
    """'perplexity 21.3 (+12% over 19.0)' and the measured speed-up, as known."""
    text = f"perplexity {r.ppl:.2f}" if r.ppl is not None else "perplexity not measured"
    if base and r.ppl is not None:
        text += f" ({(r.ppl / base - 1) * 100:+.0f}% over the original {base:.2f})"
    if r.prefill_speedup is not None:
        text += f", measured prefill {speed_text(r, 'prefill')}"
        if r.ideal_speedup is not None:
            text += f" (ideal ×{r.ideal_speedup:.2f})"
    return text


def speed_text(r: CutRow, k: str) -> str:
    """'×1.08 (95% CI 1.02–1.15: speed-up)', or the bare ratio flagged as unchecked."""
    med = r.prefill_speedup if k == "prefill" else r.decode_speedup
    ci = r.prefill_ci95 if k == "prefill" else r.decode_ci95
    ver = r.prefill_verdict if k == "prefill" else r.decode_verdict
    if med is None:
        return "not measured"
    if ci is None or ver is None:
        return f"×{med:.2f} (one measurement, no interval: not a verified speed-up)"
    return f"×{med:.2f} (95% CI {ci[0]:.2f} to {ci[1]:.2f}: {ver})"


def ppl_caption(rows: Sequence[CutRow]) -> str:
    """The cheapest method for each number of removed blocks."""
    ns = sorted({r.n for r in rows if r.n > 0 and r.ppl is not None})
    if not ns:
        return "No perplexity of a pruned model was given."
    base = baseline_ppl(rows)
    parts = []
    for n in ns[:4]:
        best = best_cut(rows, n)
        if best is not None and best.ppl is not None:
            rise = f" ({(best.ppl / base - 1) * 100:+.0f}%)" if base else ""
            parts.append(f"{n} block{'s' if n > 1 else ''}: {best.method}, {best.ppl:.2f}{rise}")
    more = f" (and {len(ns) - 4} more)" if len(ns) > 4 else ""
    against = f" against the original {base:.2f}" if base else ""
    return f"Lowest perplexity per number of blocks removed{against}: {'; '.join(parts)}{more}."


def speed_caption(rows: Sequence[CutRow]) -> str:
    """Measured against ideal speed-up."""
    meas = [r for r in rows if r.n > 0 and r.prefill_speedup is not None]
    if not meas:
        return "No speed measurement was given."
    r = max(meas, key=lambda r: (r.n, r.prefill_speedup or 0.0))
    # State the interval and what it supports, never a bare ratio as a fact.
    text = f"Removing {r.n} blocks ({r.method}): prefill {speed_text(r, 'prefill')}"
    if r.decode_speedup is not None:
        text += f"; decode {speed_text(r, 'decode')}"
    if r.ideal_speedup:
        text += f"; the ideal (FLOP count) is ×{r.ideal_speedup:.2f}"
    return text + "."


def skip_kl_caption(kl: Values) -> str:
    """Which block matters most to the output when skipped."""
    hi, lo = _argext(kl, largest=True), _argext(kl, largest=False)
    if hi is None or lo is None:
        return "No skip results."
    return (
        f"Skipping block {hi} changes the output most (KL {kl[hi]:.3g} nats); "
        f"skipping block {lo} changes it least (KL {kl[lo]:.3g} nats)."
    )


def skip_future_caption(m: Sequence[Sequence[float | None]]) -> str:
    """The block whose removal most changes what later blocks compute."""
    best = None
    for i, row in enumerate(m):
        vals = [v for v in row if v is not None]
        if vals:
            mean = sum(vals) / len(vals)
            if best is None or mean > best[1]:
                best = (i, mean)
    if best is None:
        return "No skip-future values."
    return (
        f"Skipping block {best[0]} changes the later blocks' outputs most: by "
        f"{pct(best[1])} of their norm on average."
    )


def think_caption(settle: Sequence[int | None], deep: Sequence[bool], n_layers: int) -> str:
    """Deep-thinking ratio of the strip."""
    vals = [s for s in settle if s is not None]
    if not vals:
        return "No settling layers recorded."
    ratio = sum(1 for d in deep if d) / max(1, len(deep))
    return (
        f"{pct(ratio)} of these {len(deep)} tokens are 'deep' (settle late); the mean "
        f"settling layer is {sum(vals) / len(vals):.1f} of {n_layers}."
    )
