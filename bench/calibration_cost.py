"""Benchmark: the cost of ReplaceMe-LS calibration on SmolLM2-135M.

1. Time: calibration (forward stopped after the span's last block, float64 sums, solve)
   divided by one full forward over the same windows (target <= 1.0).
2. Memory: peak RSS of a fresh process calibrating on 16k vs 128k wiki-calib tokens
   (target: growth < 10%). Memory does not depend on where the span sits, so these runs
   use the span [1, 2) (forward stopped after block 1) to keep 128k tokens affordable on a
   shared 2-core machine; the time ratio uses a late span like the ones ReplaceMe picks.

    python bench/calibration_cost.py     # writes bench/results/calibration_cost.txt
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "calibration_cost.txt"


def _setup(tokens: int, seq_len: int):  # noqa: ANN202
    from depthlens.data import load_text, make_windows
    from depthlens.models import load_model

    lm = load_model("smollm2-135m")
    windows = make_windows(
        load_text("wiki-calib"), lm.tokenizer, seq_len=seq_len, max_tokens=tokens
    )
    return lm, windows


def _calibrate(lm, windows, start: int, n: int) -> float:  # noqa: ANN001
    from depthlens.cut.calibrate import CalibrationOptions, solve_ls, stream_span_sums

    t0 = time.perf_counter()
    sums, _ = stream_span_sums(lm, windows, start, n, CalibrationOptions())
    solve_ls(sums.fit.A, sums.fit.B)
    return time.perf_counter() - t0


def _full_forward(lm, windows) -> float:  # noqa: ANN001
    from depthlens.capture.hooks import forward_kwargs

    fkw = forward_kwargs(lm.model)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in windows.batches(4):
            lm.model(input_ids=ids, attention_mask=mask, **fkw)
    return time.perf_counter() - t0


def child(tokens: int, seq_len: int) -> None:
    """Run in a fresh process: peak RSS after loading, then after calibrating."""
    lm, windows = _setup(tokens, seq_len)
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    secs = _calibrate(lm, windows, 1, 1)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "tokens": windows.n_tokens,
                "rss_after_load_mib": rss_load,
                "rss_peak_mib": rss_peak,
                "seconds": secs,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--child-tokens", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--time-tokens", type=int, default=2048)
    p.add_argument("--start", type=int, default=21, help="span start for the time ratio")
    p.add_argument("--n", type=int, default=8, help="span length for the time ratio")
    p.add_argument("--mem-tokens", default="16384,131072")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="timed repeats; the minimum counts")
    a = p.parse_args()
    torch.set_num_threads(2)
    if a.child_tokens is not None:
        child(a.child_tokens, a.seq_len)
        return
    lm, windows = _setup(a.time_tokens, a.seq_len)
    _full_forward(lm, type(windows)(windows.input_ids[:1], windows.attention_mask[:1]))  # warm
    fulls, cals = [], []
    for _ in range(a.repeats):  # alternate, and keep the fastest of each (shared machine)
        fulls.append(_full_forward(lm, windows))
        cals.append(_calibrate(lm, windows, a.start, a.n))
    full, cal = min(fulls), min(cals)
    lines = [
        f"SmolLM2-135M, replaceme-ls calibration of span [{a.start}, {a.start + a.n}) on "
        f"{windows.n_tokens} wiki-calib tokens (windows of {a.seq_len}), 2 threads, shared "
        "machine:",
        f"  full forward {full:.1f} s, calibration (stopped forward + float64 sums + solve) "
        f"{cal:.1f} s, ratio {cal / full:.2f} (fastest of {a.repeats} alternated runs each)",
        "peak RSS of a fresh process (span [1, 2)):",
    ]
    mems = []
    for tok in (int(x) for x in a.mem_tokens.split(",")):
        res = subprocess.run(
            [sys.executable, __file__, "--child-tokens", str(tok), "--seq-len", str(a.seq_len)],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(res.stdout.strip().splitlines()[-1])
        mems.append(m)
        lines.append(
            f"  {m['tokens']:>7} tokens: peak {m['rss_peak_mib']:.0f} MiB "
            f"(after load {m['rss_after_load_mib']:.0f} MiB), "
            f"calibration {m['seconds']:.1f} s"
        )
    growth = mems[-1]["rss_peak_mib"] / mems[0]["rss_peak_mib"] - 1
    lines.append(
        f"  growth {mems[0]['tokens']} -> {mems[-1]['tokens']} tokens: {100 * growth:+.1f}%"
    )
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
