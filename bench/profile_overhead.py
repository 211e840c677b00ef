"""Profiling overhead on the default model, measured side by side in one process.

(a) plain forward; (b) plain forward + the L unembedding matmuls on the lens tokens (the
floor for lens metrics); (c) profile with residual metrics only; (d) full profile.
Prints c/a (target <= 1.10) and d/b (target <= 1.20), then peak memory (max RSS, in
fresh subprocesses) of the full profile at 16k vs 64k tokens (target growth < 10%).

    .venv/bin/python bench/profile_overhead.py [--tokens 8192] [--rounds 2] [--no-memory]
    python bench/profile_overhead.py --device cuda --out DIR    # on a GPU: peak GPU memory too
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from depthlens.capture.hooks import capture_blocks
from depthlens.data import load_text, make_windows
from depthlens.metrics.lens import Lens, default_chunk
from depthlens.models import load_model
from depthlens.profiling import ProfileOptions, profile, token_masks

RESULTS = Path(__file__).parent / "results"


def plain_forward(lm, w, bs: int) -> None:
    with torch.inference_mode():
        for i in range(0, len(w), bs):
            lm.model(
                input_ids=w.input_ids[i : i + bs].to(lm.device),
                attention_mask=w.attention_mask[i : i + bs].to(lm.device),
                use_cache=False,
            )


def forward_plus_unembed(lm, w, bs: int, opts: ProfileOptions) -> None:
    """Plain forward, then final norm + unembedding of every block output at the lens tokens."""
    lens = Lens.of(lm.model, lm.arch)
    sel_all = token_masks(w, opts).lens
    chunk = default_chunk(lens)
    with torch.inference_mode(), capture_blocks(lm.model, lm.arch, attn=False) as trace:
        for i in range(0, len(w), bs):
            trace.clear()
            lm.model(
                input_ids=w.input_ids[i : i + bs].to(lm.device),
                attention_mask=w.attention_mask[i : i + bs].to(lm.device),
                use_cache=False,
            )
            sel = sel_all[i : i + bs].to(lm.device)
            for s in trace.states[1:]:
                x = s[sel]
                for c in range(0, x.shape[0], chunk):
                    lens.logits(x[c : c + chunk])


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":  # the GPU runs asynchronously: time finished work only
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def measure_memory(tokens: int, device: str = "cpu") -> float:
    """Peak memory (MiB) of a fresh process running the full profile on ``tokens`` tokens.

    On the CPU the max RSS; on a GPU the peak memory torch allocated on it.
    """
    peak = (
        "torch.cuda.max_memory_allocated() / 2**20"
        if device.startswith("cuda")
        else "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"
    )
    code = f"""
import resource, torch
from depthlens.models import load_model
from depthlens.data import load_text, make_windows
from depthlens.profiling import profile, ProfileOptions
lm = load_model("smollm2-135m", device="{device}")
w = make_windows(load_text("wiki-calib"), lm.tokenizer, seq_len=512, max_tokens={tokens})
profile(lm, w, ProfileOptions(), progress=False)
print({peak})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(RESULTS), help="folder of profile_overhead.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model("smollm2-135m", device=args.device)
    w = make_windows(load_text("wiki-calib"), lm.tokenizer, seq_len=512, max_tokens=args.tokens)
    full = ProfileOptions(batch_size=args.batch_size)
    resid = ProfileOptions(batch_size=args.batch_size, lens=False)
    runs = {
        "a_plain": lambda: plain_forward(lm, w, args.batch_size),
        "b_plain_plus_unembed": lambda: forward_plus_unembed(lm, w, args.batch_size, full),
        "c_profile_residual": lambda: profile(lm, w, resid, progress=False),
        "d_profile_full": lambda: profile(lm, w, full, progress=False),
    }
    # Warm-up: one small pass of each (includes the one-time torch.compile of the kernel).
    small = make_windows(load_text("wiki-calib"), lm.tokenizer, seq_len=512, max_tokens=1024)
    profile(lm, small, full, progress=False)
    plain_forward(lm, small, 2)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):  # interleaved rounds, so drift on a shared machine hits all
        for k, fn in runs.items():
            times[k].append(timed(fn, lm.device))
            print(f"  {k}: {times[k][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "model": "smollm2-135m",
        "device": str(lm.device),
        "gpu": torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else None,
        "tokens": w.n_tokens,
        "lens_tokens": full.lens_tokens,
        "threads": torch.get_num_threads(),
        "seconds_median": med,
        "c_over_a": med["c_profile_residual"] / med["a_plain"],
        "d_over_b": med["d_profile_full"] / med["b_plain_plus_unembed"],
    }
    print(
        f"tokens {w.n_tokens}, lens tokens {full.lens_tokens}, {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads, device {res['gpu'] or lm.device}"
    )
    for k, v in med.items():
        print(f"  {k:22s} {v:8.2f} s")
    print(f"c/a = {res['c_over_a']:.3f}  (target <= 1.10)")
    print(f"d/b = {res['d_over_b']:.3f}  (target <= 1.20)")
    if not args.no_memory:
        m16, m64 = measure_memory(16384, args.device), measure_memory(65536, args.device)
        what = "peak GPU memory" if lm.device.type == "cuda" else "peak RSS"
        res.update(
            peak_mib_16k=m16, peak_mib_64k=m64, memory_growth=m64 / m16 - 1, memory_measure=what
        )
        print(
            f"{what} full profile: 16k tokens {m16:.0f} MiB, 64k tokens {m64:.0f} MiB, "
            f"growth {100 * (m64 / m16 - 1):.1f}%  (target < 10%)"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_overhead.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
