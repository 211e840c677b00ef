"""Benchmark: is the measured speed-up of a cut stable from one measurement to the next?

The same interleaved comparison (``depthlens.evaluate.speed.interleaved_speed``: A B A B …
after warm-up, pinned threads, identical input ids) of the default model against a
``replaceme-ls`` cut of 4 blocks made in this process, repeated ``--repeats`` times (5).
For each repetition it prints the median prefill and decode ratio with its bootstrap 95%
interval and the verdict, then whether the repetitions agree: every median inside every
other repetition's interval.

    nice -n 5 python bench/speed_stability.py          # ~3 min on 1 thread
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from depthlens.cut import CutOptions, apply_cut_, plan_cut
from depthlens.data import load_text, make_windows
from depthlens.evaluate.speed import RatioStats, interleaved_speed
from depthlens.models import load_model

OUT = Path(__file__).parent / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--remove", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="whole comparisons (5)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds each (10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calib-tokens", type=int, default=4096)
    p.add_argument("-o", "--output", default=str(OUT / "speed_stability.json"))
    return p.parse_args()


def agree(stats: list[RatioStats]) -> bool:
    """Strict: every median lies inside every other repetition's 95% interval."""
    return all(lo <= s.median <= hi for s in stats for lo, hi in (t.ci95 for t in stats))


def overlap(stats: list[RatioStats]) -> bool:
    """Weaker: every two repetitions' 95% intervals overlap."""
    return all(a.ci95[0] <= b.ci95[1] and b.ci95[0] <= a.ci95[1] for a in stats for b in stats)


def main() -> None:
    """Cut once, then repeat the interleaved comparison and print each interval."""
    a = _args()
    torch.manual_seed(0)
    lm = load_model(a.model)
    win = make_windows(
        load_text("wiki-calib"), lm.tokenizer, seq_len=512, max_tokens=a.calib_tokens
    )
    cut = copy.deepcopy(lm)
    plan = plan_cut(cut, win, "replaceme-ls", CutOptions(n=a.remove), progress=False)
    apply_cut_(cut, plan)
    print(
        f"{a.model}: {lm.num_layers} blocks vs replaceme-ls cut of {plan.removed} "
        f"({cut.num_layers} blocks); load average {os.getloadavg()[0]:.2f}"
    )
    runs: list[dict[str, Any]] = []
    pre: list[RatioStats] = []
    dec: list[RatioStats] = []
    for i in range(a.repeats):
        t0 = time.perf_counter()
        sp = interleaved_speed(
            [lm, cut],
            prompt_len=a.prompt_len,
            batch=1,
            decode_tokens=a.decode_tokens,
            rounds=a.rounds,
            warmup=a.warmup,
            seed=i,
            threads=a.threads,
        )
        p, d = sp.prefill[1], sp.decode[1]
        assert p is not None and d is not None
        pre.append(p)
        dec.append(d)
        runs.append(sp.to_dict())
        print(
            f"run {i + 1}: prefill {p.describe()}; decode {d.describe()}; ideal ×{p.ideal:.3f}; "
            f"{time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}"
        )
    for name, st in (("prefill", pre), ("decode", dec)):
        meds = ", ".join(f"{s.median:.3f}" for s in st)
        print(
            f"{name}: medians {meds}; all {len(st)} agree within their intervals (every "
            f"median inside every interval): {'yes' if agree(st) else 'no'}; intervals "
            f"overlap pairwise: {'yes' if overlap(st) else 'no'}"
        )
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(
        json.dumps(
            {
                "model": a.model,
                "removed": list(plan.removed),
                "options": vars(a),
                "runs": runs,
                "agree": {"prefill": agree(pre), "decode": agree(dec)},
                "overlap": {"prefill": overlap(pre), "decode": overlap(dec)},
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
