"""Prefill and greedy-decode throughput (SPEC "Evaluation"), measured so it can be trusted.

:func:`interleaved_speed` times several models in one process, interleaved run by run
(A B A B …) after warm-up rounds, on the same input ids and a fixed thread count, and
keeps every run. Each model is compared with the first through the per-round ratios
(round r of B over round r of A, taken back to back, so slow drifts of a shared machine
cancel): their median, interquartile range and a seeded bootstrap 95% interval of the
median. A verdict says whether that interval supports a speed-up at all, and flags one
that lies above the ideal (FLOP-count) speed-up as suspicious rather than stating it.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel

VERDICTS = ("speed-up", "slow-down", "no measurable difference", "above ideal: suspicious")
BOOTSTRAP_SAMPLES = 2000


def _prompt(lm: LoadedModel, batch: int, length: int, seed: int, vocab: int | None = None):  # noqa: ANN202
    vocab = vocab or int(lm.model.config.get_text_config().vocab_size)  # type: ignore[operator,union-attr]
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=gen)  # (B, T), on the CPU


def _cache_key(model: Any) -> str:
    # transformers ≥ 5.2x names the KV cache `cache`; older releases `past_key_values`.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_run(lm: LoadedModel, ids: torch.Tensor, decode_tokens: int) -> tuple[float, float]:
    """Seconds of one full-logits prefill and of ``decode_tokens`` cached greedy steps."""
    model: Any = lm.model
    key = _cache_key(model)
    dev = lm.device
    ids = ids.to(dev)
    with torch.inference_mode():
        _sync(dev)
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        _sync(dev)
        t1 = time.perf_counter()
        past, nxt = out[key], out.logits[:, -1:].argmax(-1)  # (B, 1)
        _sync(dev)
        t2 = time.perf_counter()
        for _ in range(decode_tokens):
            step = model(input_ids=nxt, use_cache=True, **{key: past})
            past, nxt = step[key], step.logits[:, -1:].argmax(-1)
        _sync(dev)
        t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def measure_speed(
    lm: LoadedModel,
    *,
    prompt_len: int = 256,
    batch: int = 1,
    decode_tokens: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Tokens/s of one model alone: median of ``repeats`` runs after one warm-up.

    For comparing models use :func:`interleaved_speed`: two models timed one after the
    other on a shared machine can differ by 2× from noise alone.
    """
    if min(prompt_len, batch, decode_tokens, repeats) < 1:
        raise DepthlensError("speed options must all be at least 1")
    ids = _prompt(lm, batch, prompt_len, seed)
    prefill, decode = [], []
    for r in range(repeats + 1):
        tp, td = _one_run(lm, ids, decode_tokens)
        if r:  # the first run warms up
            prefill.append(batch * prompt_len / tp)
            decode.append(batch * decode_tokens / td)
    return {
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "prefill_runs": prefill,
        "decode_runs": decode,
        "options": {
            "prompt_len": prompt_len,
            "batch": batch,
            "decode_tokens": decode_tokens,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
        },
    }


@dataclass(frozen=True)
class RatioStats:
    """Speed of one model over the first model's, from paired per-round ratios."""

    median: float
    iqr: tuple[float, float]  # 25th and 75th percentile of the per-round ratios
    ci95: tuple[float, float]  # seeded bootstrap 95% interval of the median
    ideal: float | None
    verdict: str  # one of VERDICTS
    ratios: tuple[float, ...]  # one per round

    def describe(self) -> str:
        """'×1.08 [1.02, 1.15] speed-up' style text for tables and captions."""
        lo, hi = self.ci95
        return f"×{self.median:.2f} [95% CI {lo:.2f}, {hi:.2f}]: {self.verdict}"


@dataclass(frozen=True)
class ModelSpeed:
    """Every timed run of one model, in seconds and tokens/s, and the medians."""

    label: str
    prefill_s: tuple[float, ...]
    decode_s: tuple[float, ...]
    prefill_tok_s: float  # median over rounds
    decode_tok_s: float
    order: tuple[int, ...]  # position of each run in the interleaved sequence


@dataclass(frozen=True)
class SpeedComparison:
    """Interleaved timing of several models; ratios are to the first (``models[0]``)."""

    models: tuple[ModelSpeed, ...]
    prefill: tuple[RatioStats | None, ...]  # None for the first model
    decode: tuple[RatioStats | None, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form, with every run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeedComparison:
        """Inverse of :meth:`to_dict` (JSON lists back to tuples)."""

        def tuples(x: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}

        def stats(r: dict[str, Any] | None) -> RatioStats | None:
            return None if r is None else RatioStats(**tuples(r))

        return cls(
            models=tuple(ModelSpeed(**tuples(m)) for m in d["models"]),
            prefill=tuple(stats(r) for r in d["prefill"]),
            decode=tuple(stats(r) for r in d["decode"]),
            options=dict(d.get("options") or {}),
        )


def _quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def bootstrap_median_ci(
    xs: Sequence[float], seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median of ``xs`` (seeded)."""
    rng = random.Random(seed)
    n = len(xs)
    meds = [statistics.median(rng.choices(xs, k=n)) for _ in range(samples)]
    return _quantile(meds, 0.025), _quantile(meds, 0.975)


def verdict(ci95: tuple[float, float], ideal: float | None) -> str:
    """What the interval supports: a speed-up, a slow-down, nothing, or something suspicious."""
    lo, hi = ci95
    if lo <= 1.0 <= hi:
        return "no measurable difference"
    if ideal is not None and lo > ideal:
        return "above ideal: suspicious"
    return "speed-up" if lo > 1.0 else "slow-down"


def ratio_stats(
    base: Sequence[float], other: Sequence[float], ideal: float | None, seed: int
) -> RatioStats:
    """Paired ratios base_time / other_time per round, summarised."""
    ratios = [b / o for b, o in zip(base, other, strict=True)]
    ci = bootstrap_median_ci(ratios, seed)
    return RatioStats(
        median=statistics.median(ratios),
        iqr=(_quantile(ratios, 0.25), _quantile(ratios, 0.75)),
        ci95=ci,
        ideal=ideal,
        verdict=verdict(ci, ideal),
        ratios=tuple(ratios),
    )


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (None: leave as is); restore afterwards."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _ideals(models: Sequence[LoadedModel], context: int) -> list[float]:
    from depthlens.evaluate.flops import flops_per_token

    base = flops_per_token(models[0], context)["total"]
    return [base / flops_per_token(m, context)["total"] for m in models]


def _check(models: Sequence[LoadedModel], **opts: int) -> None:
    if not models:
        raise DepthlensError("interleaved_speed needs at least one model")
    bad = {k: v for k, v in opts.items() if k != "warmup" and v < 1}
    if opts["warmup"] < 0:
        bad["warmup"] = opts["warmup"]
    if bad:
        k, v = next(iter(bad.items()))
        raise DepthlensError(
            f"speed option {k} must be at least {0 if k == 'warmup' else 1}, got {v}"
        )


def _time_rounds(
    models: Sequence[LoadedModel],
    ids: torch.Tensor,
    decode_tokens: int,
    rounds: int,
    warmup: int,
    progress: bool,
) -> tuple[list[list[tuple[float, float]]], list[list[int]]]:
    """Per model, its (prefill, decode) seconds of each round and the run's place in the order.

    ``warmup`` rounds first, dropped; then ``rounds`` rounds of every model once, A B A B,
    so drifts of the machine (heat, other load) fall on every model alike.
    """
    from depthlens.progress import progress_bar

    times: list[list[tuple[float, float]]] = [[] for _ in models]
    order: list[list[int]] = [[] for _ in models]
    bar = progress_bar((warmup + rounds) * len(models), "timing", enabled=progress, unit="run")
    for _ in range(warmup):
        for lm in models:
            _one_run(lm, ids, decode_tokens)
            bar.update(1)
    k = 0
    for _ in range(rounds):
        for i, lm in enumerate(models):
            times[i].append(_one_run(lm, ids, decode_tokens))
            order[i].append(k)
            k += 1
            bar.update(1)
    bar.close()
    return times, order


def interleaved_speed(
    models: list[LoadedModel],
    *,
    prompt_len: int = 256,
    batch: int = 1,
    decode_tokens: int = 32,
    rounds: int = 10,
    warmup: int = 2,
    seed: int = 0,
    threads: int | None = None,
    labels: Sequence[str] | None = None,
    ideals: Sequence[float | None] | None = None,
    progress: bool = False,
) -> SpeedComparison:
    """Time ``models`` interleaved (A B A B …) on identical inputs; ratios to the first.

    ``warmup`` rounds are run and dropped; then ``rounds`` rounds each time every model
    once, in the same order. ``threads`` pins torch's intra-op threads for the whole
    measurement. ``ideals`` (default: the FLOP-count ideal at ``prompt_len``) decides the
    "above ideal: suspicious" verdict. The bootstrap is seeded with ``seed``.
    """
    _check(
        models,
        prompt_len=prompt_len,
        batch=batch,
        decode_tokens=decode_tokens,
        rounds=rounds,
        warmup=warmup,
        threads=threads if threads is not None else 1,
    )
    vocab = min(int(m.model.config.get_text_config().vocab_size) for m in models)  # type: ignore[operator,union-attr]
    ids = _prompt(models[0], batch, prompt_len, seed, vocab)  # the same ids for every model
    with pinned_threads(threads) as n_threads:
        times, order = _time_rounds(models, ids, decode_tokens, rounds, warmup, progress)
    names = list(labels) if labels is not None else [m.ref for m in models]
    ideal: list[float | None] = list(ideals if ideals is not None else _ideals(models, prompt_len))
    return _summarise(
        models,
        names,
        ideal,
        times,
        order,
        {
            "prompt_len": prompt_len,
            "batch": batch,
            "decode_tokens": decode_tokens,
            "rounds": rounds,
            "warmup": warmup,
            "seed": seed,
            "threads": n_threads,
            "order": "interleaved ABAB",
            "bootstrap_samples": BOOTSTRAP_SAMPLES,
        },
    )


def _summarise(
    models: Sequence[LoadedModel],
    names: list[str],
    ideal: list[float | None],
    times: list[list[tuple[float, float]]],
    order: list[list[int]],
    opts: dict[str, Any],
) -> SpeedComparison:
    b, p, d = opts["batch"], opts["prompt_len"], opts["decode_tokens"]
    speeds: list[ModelSpeed] = []
    pre: list[RatioStats | None] = []
    dec: list[RatioStats | None] = []
    for i, _lm in enumerate(models):
        ps = tuple(t[0] for t in times[i])
        ds = tuple(t[1] for t in times[i])
        speeds.append(
            ModelSpeed(
                label=names[i],
                prefill_s=ps,
                decode_s=ds,
                order=tuple(order[i]),
                prefill_tok_s=statistics.median(b * p / t for t in ps),
                decode_tok_s=statistics.median(b * d / t for t in ds),
            )
        )
        if i == 0:
            pre.append(None)
            dec.append(None)
            continue
        base = speeds[0]
        pre.append(ratio_stats(base.prefill_s, ps, ideal[i], opts["seed"] + i))
        dec.append(ratio_stats(base.decode_s, ds, ideal[i], opts["seed"] + 1000 + i))
    return SpeedComparison(
        models=tuple(speeds), prefill=tuple(pre), decode=tuple(dec), options=opts
    )
