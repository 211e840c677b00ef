"""GPU check: profile, plan, prune, eval, skip and think on a device, against the CPU.

Each command runs once on the CPU in float32 (the reference) and once per asked dtype on
``--device``; every number is compared within the tolerances below and one line is
printed per check (name, max |Δ|, max relative Δ, tolerance, PASS/FAIL). The exit code is
0 only if every check passes. With ``--device cuda`` and no usable CUDA device it prints
one line saying why it skipped and exits 0.

    python bench/gpu_check.py                                  # cuda: float32 and bfloat16
    python bench/gpu_check.py --device cpu --dtype bfloat16    # CPU bf16 vs fp32 (anywhere)

A value passes when |got − ref| ≤ atol + rtol·|ref| (NaN/None must sit in the same
places). Float32 on a GPU differs from the CPU only by summation order and kernels;
bfloat16 keeps ~3 significant digits, so its tolerances are wide and some checks compare
derived quantities (the perplexity ratio, not the per-block fit matrix).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

#: (atol, rtol) per check and dtype; see docs/GPU.md for why each is what it is.
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "float32": {
        "profile.residual": (1e-3, 1e-3),
        "profile.angular": (1e-3, 1e-3),
        "profile.lens": (2e-3, 1e-3),
        "plan.selection": (1e-3, 1e-3),
        "plan.fit": (1e-3, 1e-2),
        "prune.nll": (1e-3, 1e-3),
        "eval.nll": (1e-4, 1e-4),
        "eval.mc": (1e-2, 1e-3),
        "skip.out_kl": (2e-3, 1e-2),
        "skip.future": (2e-3, 1e-2),
        "skip.delta_loss": (2e-3, 1e-2),
        "think.scores": (2e-3, 1e-2),
    },
    "bfloat16": {
        "profile.residual": (3e-2, 5e-2),
        "profile.angular": (2e-2, 5e-2),
        "profile.lens": (0.3, 0.1),
        "plan.selection": (2e-2, 5e-2),
        "plan.fit": (5e-2, 0.2),
        "prune.nll": (5e-2, 2e-2),
        "eval.nll": (5e-2, 2e-2),
        "eval.mc": (1.0, 5e-2),
        "skip.out_kl": (0.2, 0.3),
        "skip.future": (0.1, 0.3),
        "skip.delta_loss": (0.2, 0.3),
        "think.scores": (5e-2, 0.3),
    },
}
RESIDUAL = (
    "rel_contrib_attn",
    "rel_contrib_mlp",
    "rel_contrib_block",
    "cos_attn",
    "cos_mlp",
    "cos_block",
    "block_influence",
    "resid_rms_growth",
    "resid_norm",
)
LENS = ("lens_kl", "lens_jsd", "lens_top1_agree", "lens_entropy", "lens_ce")
PROMPT = "The history of the city began when"


@dataclass(frozen=True)
class Check:
    """One comparison: the largest differences and whether they are within tolerance."""

    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    ok: bool
    note: str = ""

    def line(self, label: str) -> str:
        """The printed line."""
        tol = f"tol abs {self.atol:.0e} + rel {self.rtol:.0e}"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{label:<22} {self.name:<18} max|Δ| {self.max_abs:9.2e}  max rel "
            f"{self.max_rel:9.2e}  {tol:<26} {'PASS' if self.ok else 'FAIL'}{note}"
        )


def flatten(x: Any) -> list[float | None]:
    """Nested lists / tensors / numbers as one flat list (None and NaN kept as None)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).flatten().tolist()
    if isinstance(x, list | tuple):
        return [v for item in x for v in flatten(item)]
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return [None]
    return [float(x)]


def compare(name: str, ref: Any, got: Any, atol: float, rtol: float, note: str = "") -> Check:
    """Elementwise |got − ref| ≤ atol + rtol·|ref|; missing values must match."""
    a, b = flatten(ref), flatten(got)
    if len(a) != len(b):
        return Check(name, math.inf, math.inf, atol, rtol, False, f"{len(a)} vs {len(b)} values")
    ok, max_abs, max_rel = True, 0.0, 0.0
    for x, y in zip(a, b):
        if x is None or y is None:
            ok &= x is None and y is None
            continue
        d = abs(x - y)
        max_abs, max_rel = max(max_abs, d), max(max_rel, d / max(abs(x), 1e-12))
        ok &= d <= atol + rtol * abs(x)
    return Check(name, max_abs, max_rel, atol, rtol, ok, note)


@dataclass(frozen=True)
class Setup:
    """What every run shares."""

    model: str
    tokens: int
    plan_tokens: int
    seq_len: int
    skip_tokens: int
    remove: int
    kernel: str


def _windows(lm: Any, name: str, max_tokens: int, seq_len: int) -> Any:
    from depthlens.data import load_text, make_windows

    return make_windows(
        load_text(name), lm.tokenizer, seq_len=seq_len, max_tokens=max_tokens, seed=0
    )


def _mc_scores(lm: Any, windows: Any) -> list[float]:
    """Continuation log-likelihoods of true vs shifted continuations (the MC scorer)."""
    from depthlens.evaluate.mc import continuation_logprobs

    ids = windows.input_ids[0].tolist()
    ctx, right, wrong = ids[:24], ids[24:32], ids[40:48]
    return [s for s, _ in continuation_logprobs(lm.model, ctx, [right, wrong], lm.device)]


def run_commands(s: Setup, device: str, dtype: str, ref_plan: Any = None) -> dict[str, Any]:
    """Every command's numbers on (device, dtype), as CPU tensors / Python values."""
    from depthlens.causal import SkipOptions, ThinkOptions, skip_sweep, think
    from depthlens.cut import CutOptions, apply_cut_, plan_cut
    from depthlens.evaluate.perplexity import evaluate_perplexity
    from depthlens.models import load_model
    from depthlens.profiling import ProfileOptions, profile

    lm = load_model(s.model, dtype=dtype, device=device)
    calib = _windows(lm, "wiki-calib", s.tokens, s.seq_len)
    evalw = _windows(lm, "wiki-eval", s.tokens, s.seq_len)
    out: dict[str, Any] = {}
    prof = profile(
        lm,
        calib,
        ProfileOptions(lens_kernel=s.kernel, batch_size=2),  # type: ignore[arg-type]
        progress=False,
    )
    out["profile.residual"] = [prof.metrics[k] for k in RESIDUAL]
    out["profile.angular"] = prof.angular_distance
    out["profile.lens"] = [prof.metrics[k] for k in LENS]
    plan_w = _windows(lm, "wiki-calib", s.plan_tokens, s.seq_len)
    plan = plan_cut(lm, plan_w, "replaceme-ls", CutOptions(n=s.remove))
    out["plan"] = plan
    out["eval.nll"] = evaluate_perplexity(lm, evalw)["nll"]
    out["eval.mc"] = _mc_scores(lm, evalw)
    skip_w = _windows(lm, "wiki-eval", s.skip_tokens, s.seq_len)
    sk = skip_sweep(
        lm,
        skip_w,
        SkipOptions(lens_kernel=s.kernel),  # type: ignore[arg-type]
        progress=False,
    ).to_dict()
    out["skip.out_kl"] = [sk["skip_out_kl_mean"]] + [
        sk[v]["skip_out_kl_mean"] for v in ("attn_only", "mlp_only")
    ]
    out["skip.future"] = sk["skip_future"]
    out["skip.delta_loss"] = sk["delta_loss"]
    th = think(lm, PROMPT, ThinkOptions(max_new_tokens=8))
    out["think.tokens"] = [t["id"] for t in th.per_token]
    out["think.scores"] = [t["reasoning_score"] for t in th.per_token]
    apply_cut_(lm, ref_plan if ref_plan is not None else plan)  # same T on every run
    out["prune.nll"] = evaluate_perplexity(lm, evalw)["nll"]
    return out


def _plan_checks(ref: Any, got: Any, tol: dict[str, tuple[float, float]]) -> list[Check]:
    same = tuple(ref.removed) == tuple(got.removed)
    checks = [
        compare(
            "plan.selection",
            ref.selection["angular_distance_by_start"],
            got.selection["angular_distance_by_start"],
            *tol["plan.selection"],
            note=f"removed {list(got.removed)} vs {list(ref.removed)}",
        )
    ]
    if not same:  # a near tie may pick another span; the fit is then not comparable
        checks.append(
            Check(
                "plan.removed",
                math.inf,
                math.inf,
                0,
                0,
                False,
                f"{list(got.removed)} vs {list(ref.removed)}",
            )
        )
        return checks
    keys = ("rel_residual_ls_fit", "rel_residual_ls_heldout")

    def summary(p: Any) -> list[Any]:
        return [p.fit.get(k) for k in keys] + [
            float(torch.linalg.matrix_norm(p.transform.to("cpu", torch.float64)))
        ]

    checks.append(
        compare(
            "plan.fit",
            summary(ref),
            summary(got),
            *tol["plan.fit"],
            note="LS residual fit/held-out, ‖T‖_F",
        )
    )
    return checks


def check_all(ref: dict[str, Any], got: dict[str, Any], dtype: str) -> list[Check]:
    """Compare one run with the CPU float32 reference."""
    tol = TOLERANCES[dtype]
    checks = [
        compare(k, ref[k], got[k], *tol[k])
        for k in ("profile.residual", "profile.angular", "profile.lens")
    ]
    checks += _plan_checks(ref["plan"], got["plan"], tol)
    checks += [
        compare(k, ref[k], got[k], *tol[k])
        for k in (
            "prune.nll",
            "eval.nll",
            "eval.mc",
            "skip.out_kl",
            "skip.future",
            "skip.delta_loss",
        )
    ]
    a, b = ref["think.tokens"], got["think.tokens"]
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    checks.append(
        compare(
            "think.scores",
            ref["think.scores"][:k],
            got["think.scores"][:k],
            *tol["think.scores"],
            note=f"{k}/{len(a)} generated tokens agree",
        )
    )
    return checks


def cuda_skip_reason(device: str) -> str | None:
    """Why a CUDA run cannot happen here, or None."""
    if not device.startswith("cuda"):
        return None
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32,bfloat16", help="comma-separated dtypes")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=512, help="profile / eval tokens")
    ap.add_argument(
        "--plan-tokens",
        type=int,
        default=2048,
        help="calibration tokens of the ReplaceMe fit (≥ hidden size)",
    )
    ap.add_argument("--skip-tokens", type=int, default=128, help="skip-sweep tokens")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--remove", type=int, default=4, help="blocks to remove in plan/prune")
    ap.add_argument("--lens-kernel", default="eager", choices=("auto", "compiled", "eager"))
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    args = ap.parse_args(argv)
    reason = cuda_skip_reason(args.device)
    if reason:
        print(f"gpu_check: skipped: {reason}; run it on a machine with a GPU")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    s = Setup(
        args.model,
        args.tokens,
        args.plan_tokens,
        args.seq_len,
        args.skip_tokens,
        args.remove,
        args.lens_kernel,
    )
    t0 = time.perf_counter()
    ref = run_commands(s, "cpu", "float32")
    print(
        f"gpu_check: {args.model}, {args.tokens} tokens (skip sweep {args.skip_tokens}), "
        f"reference cpu float32 in {time.perf_counter() - t0:.0f} s; torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    all_ok = True
    for dtype in [d.strip() for d in args.dtype.split(",") if d.strip()]:
        if dtype not in TOLERANCES:
            print(f"gpu_check: unknown --dtype {dtype}; choose from {', '.join(TOLERANCES)}")
            return 2
        t1 = time.perf_counter()
        got = run_commands(s, args.device, dtype, ref_plan=ref["plan"])
        label = f"{args.device} {dtype}"
        for c in check_all(ref, got, dtype):
            print(c.line(label), flush=True)
            all_ok &= c.ok
        print(f"{label}: all commands in {time.perf_counter() - t1:.0f} s")
    print("gpu_check: ALL PASS" if all_ok else "gpu_check: SOME CHECKS FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
