"""Skip-sweep cost: plain forward vs the prefix-reusing sweep vs the naive sweep.

All three on the same tokens of the default model, in one process. The sweep is the
whole-block skip for every l (what SPEC's "about L/2 forwards" refers to); each
sublayer variant (attention-only, MLP-only) costs about the same again. The sweep's cost
is then split: the readout of each skipped model's output (unembedding, then the KL and
logsumexp reductions; the five-reduction lens kernel it used before is timed beside it),
and the block runs; and the floor of any exact sweep (L(L−1)/2 block runs, one clean
forward, L unembeddings) is computed from a body-only forward.

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
from depthlens.metrics.lens import FinalDist, Lens, LensKernel, kl_to_final
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


def _readout_costs(lm, ids, am, kernel: str, repeats: int) -> dict[str, float]:  # noqa: ANN001
    """CPU seconds of one skipped model's readout, split: logits, then the reductions.

    ``logits``: final norm + unembedding of every token (the matmul no exact full-vocabulary
    KL can avoid); ``kl``: the sweep's reductions (KL and logsumexp only); ``all5``: the five
    reductions of the profile's lens kernel, which the sweep used to compute and discard.
    """
    lens = Lens.of(lm.model, lm.arch)
    kl_kernel, all5_kernel = LensKernel(kernel, fn=kl_to_final), LensKernel(kernel)
    with torch.inference_mode():
        h = lm.model.get_input_embeddings()(ids)[am.bool()]  # (N, d); values do not matter
        fin = FinalDist.of(lens.logits(h))
        z = lens.logits(h)
        kl_kernel(z, fin.p, fin.logp)  # compile outside the timing
        all5_kernel(z, fin.p, fin.logp, fin.neg_entropy)
        return {
            "logits": _time(lambda: lens.logits(h), repeats)[1],
            "kl": _time(lambda: kl_kernel(z, fin.p, fin.logp), repeats)[1],
            "all5": _time(lambda: all5_kernel(z, fin.p, fin.logp, fin.neg_entropy), repeats)[1],
        }


def _body_cost(lm, ids, am, repeats: int) -> float:  # noqa: ANN001
    """CPU seconds of the forward without the head: embedding, every block, final norm."""
    base = lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.model

    def run() -> None:
        with torch.inference_mode():
            base(input_ids=ids, attention_mask=am, use_cache=False)

    run()
    return _time(run, repeats)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="plain-forward repeats (median)")
    ap.add_argument("--kernel", default="auto", choices=("auto", "compiled", "eager"))
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared machine, idle OpenMP threads spin and "
        "inflate CPU time)",
    )
    ap.add_argument("--skip-naive", action="store_true", help="do not time the naive sweep")
    ap.add_argument("-o", "--output", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_model("smollm2-135m")
    data = make_windows(
        load_text("wiki"),
        lm.tokenizer,
        seq_len=args.seq_len,
        max_tokens=args.windows * args.seq_len,
        seed=0,
    )
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
            lambda: skip_sweep(lm, data, opts, progress=False, naive=True)
        )
        diff = max(
            abs(a - b)
            for a, b in zip(
                fast.skip_out_kl_mean,  # type: ignore[union-attr]
                naive.skip_out_kl_mean,
            )
        )  # type: ignore[union-attr]
    costs = _readout_costs(lm, ids, am, args.kernel, args.repeats)
    c_body = _body_cost(lm, ids, am, args.repeats)
    w2, c2, _ = _time(plain, args.repeats)  # again, in case the load changed meanwhile
    w_plain, c_plain = min(w_plain, w2), min(c_plain, c2)
    fw = c_sweep / c_plain  # the sweep in forward-equivalents
    read = n * (costs["logits"] + costs["kl"]) / c_plain
    logits_only = n * costs["logits"] / c_plain
    blocks = fw - read
    # The least any exact sweep can do: L(L−1)/2 block runs (the body's block share, per
    # block), one clean forward, and L unembeddings for the full-vocabulary KL.
    per_block = c_body / c_plain / n
    floor = n * (n - 1) / 2 * per_block + 1 + logits_only

    lines = [
        f"skip sweep benchmark: smollm2-135m (L = {n}), {tuple(ids.shape)} tokens "
        f"({data.n_tokens}), whole-block skip for every l, lens kernel {args.kernel}",
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        "times: process CPU seconds (wall seconds); ratios from CPU time",
        f"plain forward (full logits, min of 2×{args.repeats}): {c_plain:8.2f} ({w_plain:.2f})",
        f"prefix-reusing sweep:                  {c_sweep:8.2f} ({w_sweep:.2f}) "
        f"= {fw:5.1f} forwards = {fw / n:.3f}·L (target ≤ 0.55·L = {0.55 * n:.1f}); "
        f"wall ratio {w_sweep / w_plain:.1f}",
        f"naive sweep (one full forward per l):  {c_naive:8.2f} ({w_naive:.2f}) "
        f"= {c_naive / c_plain:5.1f} forwards = {c_naive / c_plain / n:.3f}·L; "
        f"wall ratio {w_naive / w_plain:.1f}",
        f"where the sweep's {fw:.1f} forwards go: readout of the L skipped outputs "
        f"{read:.1f} (unembedding {logits_only:.1f} + KL/logsumexp "
        f"{n * costs['kl'] / c_plain:.1f}); blocks, clean forward and the rest {blocks:.1f}",
        f"one readout: logits {costs['logits']:.3f} s, KL+lse {costs['kl']:.3f} s (the old "
        f"five reductions: {costs['all5']:.3f} s, saving {n * (costs['all5'] - costs['kl']):.1f} s"
        f" = {n * (costs['all5'] - costs['kl']) / c_plain:.1f} forwards per sweep)",
        f"floor of any exact sweep: L(L−1)/2 block runs ({per_block:.4f} forwards each, from "
        f"the body-only forward {c_body:.2f} s) + 1 clean forward + L unembeddings = "
        f"{floor:.1f} forwards = {floor / n:.3f}·L",
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
