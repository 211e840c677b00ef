"""Cost of the representation metrics on the default model, measured side by side.

(a) plain forward over the token windows; (b) ``analyse_repr`` in token mode on the same
windows (streamed CKA over every token, geometry on a capped sample of --max-samples).
Prints b/a (target <= 1.5), peak RSS (max RSS of fresh subprocesses) at 16k vs 64k
tokens (target growth < 10%), and the streamed CKA against the full-batch computation on
a small case (target max |diff| <= 1e-6), with the load average.

    OMP_NUM_THREADS=1 .venv/bin/python bench/repr_cost.py [--tokens 16384] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from depthlens.capture.hooks import forward_kwargs
from depthlens.data import load_text, make_windows
from depthlens.repr import ReprOptions, analyse_repr, load_repr_model
from depthlens.repr.cka import StreamingCKA
from depthlens.repr.features import extractor_for, token_features
from depthlens.repr.run import CkaBuffer

RESULTS = Path(__file__).parent / "results"


def plain_forward(lm, w, bs: int) -> None:
    """The cheapest forward that computes the same states: no KV cache, no full logits
    (``logits_to_keep=1``, as the repr pass does), so the LM head is not in the baseline."""
    kw = forward_kwargs(lm.model)
    with torch.inference_mode():
        for ids, mask in w.batches(bs):
            lm.model(input_ids=ids, attention_mask=mask, **kw)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). On a shared, overloaded machine the
    CPU time (one thread) measures the work; the wall time mostly measures the queue."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def hsic1_naive(k: torch.Tensor, l: torch.Tensor) -> float:
    """Unbiased HSIC (Song et al. 2012) written out with explicit matrices and ones vectors."""
    n = k.shape[0]
    kt, lt = k.clone(), l.clone()
    kt.fill_diagonal_(0)
    lt.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=k.dtype)
    t1 = torch.trace(kt @ lt)
    t2 = (one.T @ kt @ one) * (one.T @ lt @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (one.T @ kt @ lt @ one)
    return float((t1 + t2 - t3) / (n * (n - 3)))


def cka_full_batch(feats: list[torch.Tensor], batch: int) -> torch.Tensor:
    """All features in memory, split into the same consecutive minibatches, naive HSIC_1."""
    n, nl = feats[0].shape[0], len(feats)
    out = torch.zeros(nl, nl, dtype=torch.float64)
    h = torch.zeros(nl, nl, dtype=torch.float64)
    slices = [slice(i, min(i + batch, n)) for i in range(0, n, batch)]
    slices = [s for s in slices if s.stop - s.start >= 4]
    for s in slices:
        grams = [f[s].double() @ f[s].double().T for f in feats]
        for i in range(nl):
            for j in range(nl):
                h[i, j] += hsic1_naive(grams[i], grams[j])
    for i in range(nl):
        for j in range(nl):
            out[i, j] = h[i, j] / (h[i, i] * h[j, j]).sqrt()
    return out


def cka_check(lm, batch: int) -> dict:
    """Streamed CKA vs full-batch CKA on 2 windows x 64 tokens of the real model."""
    w = make_windows(load_text("wiki-eval"), lm.tokenizer, seq_len=64, max_tokens=128)
    ex = extractor_for(lm)
    res = {}
    for b in (batch, 10**6):  # minibatches, and one batch holding every token
        cka = StreamingCKA(lm.num_layers + 1)
        buf = CkaBuffer(cka, b)
        stored = []
        for ids, mask in w.batches(1):  # tokens arrive one window at a time
            f = token_features(ex, ids, mask, include_first=False)
            buf.add(f)
            stored.append(f)
        buf.flush()
        feats = [torch.cat(p) for p in zip(*stored)]
        full = cka_full_batch(feats, b)
        key = "one_batch" if b == 10**6 else f"batch_{b}"
        res[key] = {
            "n_tokens": int(feats[0].shape[0]),
            "n_batches": cka.n_batches,
            "max_abs_diff": float((cka.result() - full).abs().max()),
        }
    return res


def measure_memory(tokens: int, max_samples: int) -> float:
    """Max RSS (MiB) of a fresh process running analyse_repr on ``tokens`` tokens."""
    code = f"""
import resource, torch
from depthlens.data import load_text, make_windows
from depthlens.repr import ReprOptions, analyse_repr, load_repr_model
lm = load_repr_model("smollm2-135m")
w = make_windows(load_text("wiki"), lm.tokenizer, seq_len=256, max_tokens={tokens})
analyse_repr(lm, w, ReprOptions(max_samples={max_samples}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--max-samples", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--cka-batch", type=int, default=256)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    if os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)  # CPU time = work only with one thread
    lm = load_repr_model("smollm2-135m")
    res: dict = {
        "model": "smollm2-135m",
        "threads": torch.get_num_threads(),
        "load_avg_start": os.getloadavg(),
    }
    res["cka_check"] = cka_check(lm, 32)
    for k, v in res["cka_check"].items():
        print(
            f"streamed vs full-batch CKA ({k}, {v['n_tokens']} tokens, {v['n_batches']} "
            f"minibatches): max |diff| = {v['max_abs_diff']:.2e}  (target <= 1e-6)"
        )
    if not args.no_timing:
        w = make_windows(load_text("wiki"), lm.tokenizer, seq_len=256, max_tokens=args.tokens)
        opts = ReprOptions(
            max_samples=args.max_samples, batch_size=args.batch_size, cka_batch=args.cka_batch
        )
        small = make_windows(load_text("wiki"), lm.tokenizer, seq_len=256, max_tokens=1024)
        plain_forward(lm, small, args.batch_size)  # warm-up
        a1 = timed(lambda: plain_forward(lm, w, args.batch_size))
        b = timed(lambda: analyse_repr(lm, w, opts))
        a2 = timed(lambda: plain_forward(lm, w, args.batch_size))
        ratio_cpu = b[1] / ((a1[1] + a2[1]) / 2)
        ratio_wall = b[0] / ((a1[0] + a2[0]) / 2)
        res.update(
            tokens=w.n_tokens,
            max_samples=args.max_samples,
            cka_batch=args.cka_batch,
            seconds_wall={"a_plain_1": a1[0], "b_repr": b[0], "a_plain_2": a2[0]},
            seconds_cpu={"a_plain_1": a1[1], "b_repr": b[1], "a_plain_2": a2[1]},
            b_over_a_cpu=ratio_cpu,
            b_over_a_wall=ratio_wall,
        )
        print(
            f"tokens {w.n_tokens}, {torch.get_num_threads()} thread(s), CPU seconds: plain "
            f"forward {a1[1]:.1f} / {a2[1]:.1f}, repr {b[1]:.1f}; b/a = {ratio_cpu:.3f} "
            f"(target <= 1.5); wall b/a = {ratio_wall:.3f}"
        )
    if not args.no_memory:
        m16 = measure_memory(16384, args.max_samples)
        m64 = measure_memory(65536, args.max_samples)
        res.update(peak_rss_mib_16k=m16, peak_rss_mib_64k=m64, memory_growth=m64 / m16 - 1)
        print(
            f"peak RSS repr: 16k tokens {m16:.0f} MiB, 64k tokens {m64:.0f} MiB, growth "
            f"{100 * (m64 / m16 - 1):.1f}%  (target < 10%)"
        )
    res["load_avg_end"] = os.getloadavg()
    print(f"load average: start {res['load_avg_start']}, end {res['load_avg_end']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "repr_cost.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    for stale in ("seconds", "b_over_a"):  # keys of an earlier version of this script
        old.pop(stale, None)
    # a run with --no-timing / --no-memory keeps the other part of an earlier run
    path.write_text(json.dumps({**old, **res}, indent=1) + "\n")


if __name__ == "__main__":
    main()
