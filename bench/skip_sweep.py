"""Skip-sweep cost: plain forward vs the prefix-reusing sweep vs the naive sweep.

All three on the same tokens of the default model, in one process. The sweep is the
whole-block skip for every l (what SPEC's "about L/2 forwards" refers to); each
sublayer variant (attention-only, MLP-only) costs about the same again.

    python bench/skip_sweep.py --windows 2 --seq-len 256
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from depthlens.causal import SkipOptions, skip_sweep
from depthlens.data import load_text, make_windows
from depthlens.metrics.lens import FinalDist, Lens, LensKernel
from depthlens.models import load_model

RESULTS = Path(__file__).parent / "results" / "skip_sweep.txt"


def _time(fn, repeats: int = 1) -> tuple[float, float, object]:  # noqa: ANN001
    """(min wall seconds, min process CPU seconds, last result) over ``repeats`` runs.

    On a shared machine the wall time of a run depends on what else is running; the
    process CPU time (all threads) is much less sensitive, so the ratios use it.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def _lens_cost(lm, ids, am, kernel: str, repeats: int) -> float:  # noqa: ANN001
    """CPU seconds of one skipped model's readout: final norm + unembedding + KL kernel."""
    lens = Lens.of(lm.model, lm.arch)
    kern = LensKernel(kernel)
    with torch.inference_mode():
        h = lm.model.get_input_embeddings()(ids)[am.bool()]  # (N, d); values do not matter
        fin = FinalDist.of(lens.logits(h))

        def readout() -> None:
            kern(lens.logits(h), fin.p, fin.logp, fin.neg_entropy)

        readout()  # compile
        return _time(readout, repeats)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="plain-forward repeats (median)")
    ap.add_argument("--kernel", default="auto", choices=("auto", "compiled", "eager"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared machine, idle OpenMP threads spin and "
                    "inflate CPU time)")
    ap.add_argument("--skip-naive", action="store_true", help="do not time the naive sweep")
    ap.add_argument("-o", "--output", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model("smollm2-135m")
    data = make_windows(load_text("wiki"), lm.tokenizer, seq_len=args.seq_len,
                        max_tokens=args.windows * args.seq_len, seed=0)
    ids, am = data.input_ids, data.attention_mask
    n = lm.num_layers
    opts = SkipOptions(sublayers=(), batch_size=args.windows, lens_kernel=args.kernel)

    def plain() -> None:
        with torch.inference_mode():
            lm.model(input_ids=ids, attention_mask=am, use_cache=False)

    plain()  # warm-up
    small = make_windows(load_text("wiki"), lm.tokenizer, seq_len=16, max_tokens=16, seed=1)
    skip_sweep(lm, small, opts, progress=False)  # warm-up: compiles the lens kernel
    w_plain, c_plain, _ = _time(plain, args.repeats)
    w_sweep, c_sweep, fast = _time(lambda: skip_sweep(lm, data, opts, progress=False))
    w_naive = c_naive = diff = float("nan")
    if not args.skip_naive:
        w_naive, c_naive, naive = _time(
            lambda: skip_sweep(lm, data, opts, progress=False, naive=True))
        diff = max(abs(a - b) for a, b in zip(fast.skip_out_kl_mean,  # type: ignore[union-attr]
                                               naive.skip_out_kl_mean))  # type: ignore[union-attr]
    c_lens = _lens_cost(lm, ids, am, args.kernel, args.repeats)
    w2, c2, _ = _time(plain, args.repeats)  # again, in case the load changed meanwhile
    w_plain, c_plain = min(w_plain, w2), min(c_plain, c2)

    lines = [
        f"skip sweep benchmark: smollm2-135m (L = {n}), {tuple(ids.shape)} tokens "
        f"({data.n_tokens}), whole-block skip for every l, lens kernel {args.kernel}",
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        "times: process CPU seconds (wall seconds); ratios from CPU time",
        f"plain forward (full logits, min of 2×{args.repeats}): {c_plain:8.2f} ({w_plain:.2f})",
        f"prefix-reusing sweep:                  {c_sweep:8.2f} ({w_sweep:.2f}) "
        f"= {c_sweep / c_plain:5.1f} forwards = {c_sweep / c_plain / n:.3f}·L "
        f"(target ≤ 0.55·L = {0.55 * n:.1f}); wall ratio {w_sweep / w_plain:.1f}",
        f"naive sweep (one full forward per l):  {c_naive:8.2f} ({w_naive:.2f}) "
        f"= {c_naive / c_plain:5.1f} forwards = {c_naive / c_plain / n:.3f}·L; "
        f"wall ratio {w_naive / w_plain:.1f}",
        f"of the sweep, unembedding + KL for each of the L skipped models: {n} × {c_lens:.3f} s "
        f"= {n * c_lens / c_plain:.1f} forwards; blocks: {(c_sweep - n * c_lens) / c_plain:.1f} "
        f"forwards = {(c_sweep - n * c_lens) / c_plain / n:.3f}·L",
        f"naive / reusing (CPU): {c_naive / c_sweep:.2f}x; max |Δ skip_out_kl| between them: "
        f"{diff:.2e}",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
