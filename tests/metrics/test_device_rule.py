"""The device rule: float64 sums on the CPU, reductions where the model runs.

No second device exists on a CPU-only machine, so the rule is checked three ways that can
each fail: (1) the helpers themselves (float64 CPU output, widened before summing);
(2) a source scan: nothing in ``src/`` adds a raw tensor reduction into an accumulator
without going through ``host``/``host_sum``/``host_max`` (the pattern that breaks on CUDA);
(3) every analysis run with the model in bfloat16 matches float32 within stated
tolerances, and every accumulator it creates is still float64 on the CPU afterwards.
"""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import random_windows, wrap_tiny

import depthlens
from depthlens.metrics.accumulate import Accumulator, host, host_max, host_sum, widen
from depthlens.models.loading import LoadedModel

SRC = Path(depthlens.__file__).parent


# (1) the helpers -----------------------------------------------------------------------


def test_host_sum_widens_before_summing() -> None:
    x = torch.tensor([1e8] + [0.3] * 1000, dtype=torch.float32)
    got = host_sum(x)
    assert got.dtype == torch.float64 and got.device.type == "cpu" and got.shape == ()
    assert abs(float(got) - (1e8 + 300.0)) < 1e-3  # 0.3 in float32 is 0.30000001192...
    assert abs(float(x.sum()) - (1e8 + 300.0)) >= 1.0  # float32 summation cannot say this


def test_host_helpers_return_float64_cpu() -> None:
    x = torch.randn(5, 3).to(torch.bfloat16)
    for t in (host(x), host_sum(x), host_sum(x, dim=0), host_max(x)):
        assert t.dtype == torch.float64 and t.device.type == "cpu"
    torch.testing.assert_close(host_sum(x, dim=0), x.double().sum(0))
    assert float(host_max(x)) == float(x.double().max())
    assert float(host_max(torch.empty(0))) == -math.inf
    assert widen(x).dtype == torch.float64 and widen(x).device == x.device


# (2) the source scan -------------------------------------------------------------------

REDUCTIONS = {"sum", "max", "min", "mean", "norm", "amax", "amin"}
WRAPPERS = {"host", "host_sum", "host_max", "float", "int", "len", "bool"}


def _raw_reduction_adds(tree: ast.AST) -> list[int]:
    """Lines of ``acc[...] += <tensor reduction>`` / ``acc.x += a @ b`` not wrapped."""
    bad = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.AugAssign)
            and isinstance(node.target, ast.Subscript | ast.Attribute)
        ):
            continue
        v = node.value
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in WRAPPERS:
            continue
        for sub in ast.walk(v):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in REDUCTIONS
            ) or (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.MatMult)):
                bad.append(node.lineno)
                break
    return bad


def test_scan_finds_the_pattern_that_breaks_on_cuda() -> None:
    old = "sums.t[name][l] += v.double().sum()\nacc.A += m.T @ m\nacc.B += host(m.T @ m)\n"
    assert _raw_reduction_adds(ast.parse(old)) == [1, 2]


def test_no_raw_reduction_is_added_to_an_accumulator() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for line in _raw_reduction_adds(ast.parse(path.read_text(encoding="utf-8"))):
            found.append(f"{path.relative_to(SRC)}:{line}")
    assert not found, (
        "reduce on the model's device and move the result with "
        "depthlens.metrics.accumulate.host_sum / host / host_max before adding it to a "
        f"CPU float64 accumulator (a device tensor added in place fails on CUDA): {found}"
    )


# (3) bfloat16 vs float32, accumulators float64 on the CPU ------------------------------


def _bf16(lm: LoadedModel) -> LoadedModel:
    return LoadedModel(
        copy.deepcopy(lm.model).to(torch.bfloat16),
        None,
        lm.arch,
        ref=lm.ref + "-bf16",
        source="test",
    )


def _leaves_ok(acc: Accumulator) -> None:
    for name, t, _ in acc._leaves():
        assert t.dtype == torch.float64 and t.device.type == "cpu", name


def _record(monkeypatch: pytest.MonkeyPatch, cls: Any, seen: list[Accumulator]) -> None:
    """Record every ``cls.zeros(...)`` accumulator an analysis creates."""
    real = cls.zeros.__func__

    def spy(c: Any, *a: Any, **k: Any) -> Any:
        acc = real(c, *a, **k)
        seen.append(acc)
        return acc

    monkeypatch.setattr(cls, "zeros", classmethod(spy))


def _flat(x: Any) -> list[float]:
    if isinstance(x, list | tuple):
        return [v for item in x for v in _flat(item)]
    return [math.nan if x is None else float(x)]


def _close(a: Any, b: Any, atol: float, rtol: float) -> None:
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= atol + rtol * abs(x), (x, y)


def test_profile_bf16_matches_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthlens.profiling import ProfileOptions, profile
    from depthlens.profiling.run import ProfileSums

    seen: list[Accumulator] = []
    _record(monkeypatch, ProfileSums, seen)
    lm, data = wrap_tiny("llama"), random_windows(n=4, seq_len=16, pad_last=3)
    opts = ProfileOptions(lens_kernel="eager", batch_size=2)
    ref, got = (
        profile(lm, data, opts, progress=False),
        profile(_bf16(lm), data, opts, progress=False),
    )
    assert len(seen) == 2
    for acc in seen:
        _leaves_ok(acc)
    for name in (
        "rel_contrib_attn",
        "rel_contrib_mlp",
        "cos_block",
        "resid_norm",
        "lens_jsd",
        "lens_entropy",
        "lens_ce",
    ):
        _close(ref.metrics[name], got.metrics[name], 0.05, 0.05)
    _close(ref.angular_distance, got.angular_distance, 0.02, 0.05)


def test_skip_and_think_bf16_match_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthlens.causal import SkipOptions, depth_jsd, skip_sweep
    from depthlens.causal.skip import SkipSums

    seen: list[Accumulator] = []
    _record(monkeypatch, SkipSums, seen)
    lm, data = wrap_tiny("llama"), random_windows(n=2, seq_len=12)
    opts = SkipOptions(lens_kernel="eager")
    ref = skip_sweep(lm, data, opts, progress=False).to_dict()
    got = skip_sweep(_bf16(lm), data, opts, progress=False).to_dict()
    assert len(seen) == 2
    for acc in seen:
        _leaves_ok(acc)
    _close(ref["skip_out_kl_mean"], got["skip_out_kl_mean"], 2e-3, 0.2)
    _close(ref["skip_future"], got["skip_future"], 0.05, 0.1)
    ids = data.input_ids[:1]
    _close(depth_jsd(lm, ids).tolist(), depth_jsd(_bf16(lm), ids).tolist(), 2e-3, 0.2)


def test_calibration_and_eval_bf16_match_fp32() -> None:
    from depthlens.cut.calibrate import CalibrationOptions, stream_span_sums
    from depthlens.evaluate.mc import continuation_logprobs
    from depthlens.evaluate.perplexity import evaluate_perplexity

    lm, data = wrap_tiny("llama"), random_windows(n=10, seq_len=16)
    bf = _bf16(lm)
    opts = CalibrationOptions(holdout_every=5)
    ref, _ = stream_span_sums(lm, data, 1, 2, opts)
    got, _ = stream_span_sums(bf, data, 1, 2, opts)
    _leaves_ok(ref)
    _leaves_ok(got)
    scale = float(ref.fit.A.abs().max())
    assert float((ref.fit.A - got.fit.A).abs().max()) <= 0.02 * scale
    assert float(ref.fit.n) == float(got.fit.n) > 0
    p_ref, p_got = evaluate_perplexity(lm, data), evaluate_perplexity(bf, data)
    assert abs(p_ref["nll"] - p_got["nll"]) <= 0.01 * p_ref["nll"]
    ctx, chs = [1, 5, 9, 14], [[20, 21], [30, 31, 32]]
    _close(
        continuation_logprobs(lm.model, ctx, chs, lm.device),
        continuation_logprobs(bf.model, ctx, chs, bf.device),
        0.05,
        0.01,
    )


def test_nccl_reduces_through_the_gpu_gloo_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthlens.metrics.accumulate import comm_device

    assert comm_device("gloo") is None  # CPU tensors are reduced where they are
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert comm_device("nccl") == torch.device("cuda", 3)  # NCCL cannot reduce CPU tensors
