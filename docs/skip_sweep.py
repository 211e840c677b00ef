"""Figure and half-vs-half numbers for docs/FINDING_skip.md, from a `depthlens skip` JSON.

    depthlens skip smollm2-135m --data wiki --seq-len 256 --max-tokens 512 \
        --sublayers none --skip-lens-kernel eager -o docs/skip_sweep.json
    python docs/skip_sweep.py docs/skip_sweep.json docs/skip_sweep.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(src: str, dst: str) -> None:
    d = json.load(open(src))
    kl = np.array(d["skip_out_kl_mean"], dtype=float)
    dl = np.array(d["delta_loss"], dtype=float)
    fut = np.array([[np.nan if v is None else v for v in r] for r in d["skip_future"]], float)
    n = len(kl)
    h = n // 2
    row = np.nanmean(fut, axis=1)  # effect of skipping l on all later blocks
    print(f"L = {n}; tokens = {d['tokens']}; clean loss = {d['loss']:.4f}")
    for name, v in (("skip_out_kl_mean", kl), ("delta_loss", dl), ("skip_future row mean", row)):
        a, b = np.nanmean(v[:h]), np.nanmean(v[h:])
        print(f"{name:22s} first half {a:.4f}  second half {b:.4f}  ratio {b / a:.2f}")
        print(f"{'':22s} median: {np.nanmedian(v[:h]):.4f} vs {np.nanmedian(v[h:]):.4f}")
    # skip_future restricted to targets j in the second half, by source half
    sec = fut[:, h:]
    print(f"future onto j ≥ {h}: from l < {h}: {np.nanmean(sec[:h]):.4f}, "
          f"from l ≥ {h}: {np.nanmean(sec[h:]):.4f}")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.6))
    im = ax0.imshow(fut, cmap="viridis", vmin=0, vmax=min(1.0, float(np.nanmax(fut))))
    ax0.set_xlabel("later block j")
    ax0.set_ylabel("skipped block l")
    ax0.set_title("skip_future[l][j] = ‖Δ_j^skip − Δ_j‖/‖Δ_j‖ (mean)")
    fig.colorbar(im, ax=ax0, fraction=0.046)
    colors = ["tab:blue"] * h + ["tab:orange"] * (n - h)
    ax1.bar(range(n), kl, color=colors)
    ax1.set_yscale("log")
    ax1.set_xlabel("skipped block l (blue: first half, orange: second half)")
    ax1.set_ylabel("KL(p_L ‖ p_L^skip), nats (log)")
    ax1.set_title("skip_out_kl (mean over tokens)")
    ref = d["model"]["ref"]
    fig.suptitle(f"{ref}: skipping one block, {d['tokens']['skip']} wiki tokens")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
