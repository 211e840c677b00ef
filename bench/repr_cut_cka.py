"""Finding: the CKA map of SmolLM2-135M against the same model cut by ReplaceMe.

Plans a ReplaceMe (least-squares) cut of --remove blocks on wiki-calib, applies it in
process to a second copy, then streams linear CKA between every layer of the original
(h_0..h_30) and of the cut model on the same wiki-eval tokens. Prints, for each layer of
the cut model, the most similar layer of the original, and writes the similarity JSON and
page under bench/results/.

    OMP_NUM_THREADS=1 .venv/bin/python bench/repr_cut_cka.py [--remove 6] [--tokens 4096]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from depthlens.cut import CutOptions, apply_cut_, plan_cut
from depthlens.data import load_text, make_windows
from depthlens.metrics.catalog.repr import CKA
from depthlens.repr import ReprOptions, load_repr_model, similarity
from depthlens.repr.report import write_repr_page

RESULTS = Path(__file__).parent / "results"


def counterparts(removed: list[int], num_layers: int, merge_into: int | None) -> list[int]:
    """For each state h_j of the cut model, the state of the original it stands for.

    h_j of the cut model is the output of its block j−1 = original block kept[j−1]; the
    block that absorbed ReplaceMe's T stands for the state after the removed span.
    """
    kept = [l for l in range(num_layers) if l not in set(removed)]
    out = [0] + [k + 1 for k in kept]
    if merge_into is not None:
        out[merge_into + 1] = max(removed) + 1
    return out


def print_summary(
    cka: torch.Tensor, removed: list[int], merge_into: int | None, tokens: dict
) -> None:
    """Per cut layer: its counterpart, the best-matching original layer and both CKAs."""
    exp = counterparts(removed, cka.shape[0] - 1, merge_into)
    print("cut layer  counterpart  best original layer  CKA(best)  CKA(counterpart)")
    for j in range(cka.shape[1]):
        b = int(cka[:, j].argmax())
        print(
            f"{j:9d}  {exp[j]:11d}  {b:19d}  {float(cka[b, j]):9.3f}  {float(cka[exp[j], j]):16.3f}"
        )
    diag = [float(cka[exp[j], j]) for j in range(cka.shape[1])]
    first = min(removed)
    before, after = diag[:first], diag[first + 1 :]
    print(
        f"CKA(counterpart): h_0..h_{first - 1} (unchanged) mean "
        f"{sum(before) / len(before):.3f}; h_{first} (block {first - 1} with T merged) "
        f"{diag[first]:.3f}; h_{first + 1}..h_{len(diag) - 1} (after the span) mean "
        f"{sum(after) / len(after):.3f}, min {min(after):.3f}; tokens {tokens}; "
        f"load {os.getloadavg()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--remove", type=int, default=6)
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    torch.manual_seed(0)
    base = load_repr_model("smollm2-135m")
    cut = load_repr_model("smollm2-135m")
    calib = make_windows(
        load_text("wiki-calib"), base.tokenizer, seq_len=512, max_tokens=args.calib_tokens
    )
    plan = plan_cut(cut, calib, "replaceme-ls", CutOptions(n=args.remove))
    apply_cut_(cut, plan)
    print(
        f"ReplaceMe removed blocks {list(plan.removed)} (merged into block "
        f"{plan.merge_into}); cut model has {cut.num_layers} blocks"
    )
    w = make_windows(load_text("wiki-eval"), base.tokenizer, seq_len=256, max_tokens=args.tokens)
    res = similarity(base, cut, w, ReprOptions(max_samples=256))
    res.options["cut"] = {  # how model B was made: part of the run's options
        "method": "replaceme-ls",
        "removed": list(plan.removed),
        "merge_into": plan.merge_into,
        "calib_tokens": calib.n_tokens,
    }
    cka = torch.tensor(res.metrics[CKA.name])  # (31, L_cut + 1)
    print_summary(cka, list(plan.removed), plan.merge_into, res.tokens)
    RESULTS.mkdir(exist_ok=True)
    res.save(RESULTS / "repr_cut_cka.json")
    write_repr_page(RESULTS / "repr_cut_cka.html", res)


if __name__ == "__main__":
    main()
