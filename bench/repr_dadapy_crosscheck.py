"""TwoNN and GRIDE of depthlens against DADApy's own code, on data of known dimension.

DADApy's estimator code is read from its source distribution
(:func:`depthlens.repr.reference.dadapy_estimators`) and fed with neighbour distances
computed by numpy.

    pip download --no-deps dadapy==0.3.4 && tar xzf dadapy-0.3.4.tar.gz
    PYTHONPATH=src python bench/repr_dadapy_crosscheck.py dadapy-0.3.4 \
        -o bench/results/repr_dadapy_crosscheck.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from depthlens.repr.geometry import two_nn
from depthlens.repr.gride import gride_scaling
from depthlens.repr.reference import dadapy_estimators


def _data() -> dict[str, tuple[torch.Tensor, float]]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for dim, amb in ((3, 10), (6, 30), (10, 50)):
        z = torch.randn(2000, dim, generator=g, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(amb, amb, generator=g, dtype=torch.float64))
        out[f"gaussian d={dim} in R^{amb}"] = (z @ q[:dim], float(dim))
    a = torch.rand(2000, 2, generator=g, dtype=torch.float64) * 2 * math.pi
    out["flat torus d=2 in R^4"] = (torch.cat([a.cos(), a.sin()], 1), 2.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dadapy_src")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    ut, twonn_dadapy = dadapy_estimators(Path(args.dadapy_src))
    rows = []
    for name, (x, true_d) in _data().items():
        xn = x.numpy()
        d2 = ((xn[:, None, :] - xn[None, :, :]) ** 2).sum(-1)
        dist = np.sqrt(np.sort(d2, axis=1)[:, :17])  # column 0 is the point itself
        mus2 = dist[:, 2] / dist[:, 1]
        theirs_twonn = float(twonn_dadapy(None, mus2, 0.9, "base"))
        ours_twonn = two_nn(x).dim
        ours, _ = gride_scaling(x, range_max=16)
        theirs = [
            float(ut._argmax_loglik(np.float64, 0.001, 1000, dist[:, 2 * k] / dist[:, k], k, 2 * k))
            for k in (1, 2, 4, 8)
        ]
        rel = [abs(o.dim - t) / t for o, t in zip(ours, theirs, strict=True)]
        rows.append(
            {
                "data": name,
                "true_dim": true_d,
                "twonn": {"depthlens": ours_twonn, "dadapy": theirs_twonn},
                "twonn_rel_diff": abs(ours_twonn - theirs_twonn) / theirs_twonn,
                "gride_k": [1, 2, 4, 8],
                "gride": {"depthlens": [o.dim for o in ours], "dadapy": theirs},
                "gride_max_rel_diff": max(rel),
            }
        )
        print(
            f"{name:24s} TwoNN {ours_twonn:.4f} vs {theirs_twonn:.4f}  GRIDE "
            + " ".join(f"{o.dim:.3f}/{t:.3f}" for o, t in zip(ours, theirs, strict=True))
            + f"  max rel diff {max(rel):.2e}"
        )
    if args.output:
        Path(args.output).write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
