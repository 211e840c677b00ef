"""Benchmark: when does the first position (BOS / attention sink) matter to the ReplaceMe fit?

Reproduces the measurement behind ``CalibrationOptions.fit_include_first_token`` (commit
7595b43: "excluding it gave wiki ppl 3.2e6 vs 27 on SmolLM2"). On the default model, for
each calibration budget it plans ``replaceme-ls`` (remove 4) twice, with the first position
of every calibration window in the least-squares fit and without it, applies each cut and
prints held-out wiki perplexity (windows with a BOS in front, as depthlens makes them, and
without). It also prints the fit quality, ‖MT − Z‖ / ‖Z‖ on held-out windows, split into
ordinary tokens and the first position, for plain removal (T = I) and for the fitted T.

    nice -n 5 python bench/first_position.py        # ~5 min on 2 busy cores
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

from depthlens.arch.spec import blocks_of
from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut
from depthlens.data import check_disjoint, load_text, make_windows
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.models import load_model

OUT = Path(__file__).parent / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--remove", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument(
        "--calib-tokens",
        default="4096,16384",
        help="calibration budgets (4096 = bench/prune_quality.py at 7595b43)",
    )
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("-o", "--output", default=str(OUT / "first_position.json"))
    return p.parse_args()


def residuals(lm: Any, windows: Any, start: int, n: int, t: torch.Tensor) -> dict[str, float]:
    """‖MT − Z‖/‖Z‖ and ‖M − Z‖/‖Z‖ (T = I) on ``windows``, first position vs the rest.

    An independent computation (hooks on the real modules, full forward with hidden states),
    M = block s−1's MLP output, Z = h_{s+n} − (h_s − M), as in SPEC "Cutting depth".
    """
    mlp = blocks_of(lm.model, lm.arch)[start - 1].get_submodule(lm.arch.mlp)
    got: dict[str, torch.Tensor] = {}
    handle = mlp.register_forward_hook(lambda _m, _a, out: got.__setitem__("m", out))
    sq = {k: 0.0 for k in ("fit_first", "fit_rest", "id_first", "id_rest", "z_first", "z_rest")}
    try:
        with torch.inference_mode():
            for ids, mask in windows.batches(4):
                hs = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                h = hs.hidden_states
                m = got["m"].double()  # (B, T, d)
                z = h[start + n].double() - (h[start].double() - m)
                first = torch.zeros_like(mask, dtype=torch.bool)
                first[:, 0] = True
                for name, sel in (("first", first & mask.bool()), ("rest", ~first & mask.bool())):
                    mm, zz = m[sel], z[sel]
                    sq[f"fit_{name}"] += float(((mm @ t - zz) ** 2).sum())
                    sq[f"id_{name}"] += float(((mm - zz) ** 2).sum())
                    sq[f"z_{name}"] += float((zz**2).sum())
    finally:
        handle.remove()
    return {
        f"{k}_{p}": (sq[f"{k}_{p}"] / sq[f"z_{p}"]) ** 0.5
        for k in ("fit", "id")
        for p in ("first", "rest")
    }


def main() -> None:
    """Plan with and without the first position for each budget; print perplexity and fit."""
    a = _args()
    torch.manual_seed(0)
    lm = load_model(a.model)
    calib_src, eval_src = load_text("wiki-calib"), load_text("wiki-eval")
    check_disjoint(calib_src, eval_src)
    evals = {
        "bos": make_windows(eval_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=a.eval_tokens),
        "no-bos": make_windows(
            eval_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=a.eval_tokens, add_bos=False
        ),
    }
    base = {k: evaluate_perplexity(lm, w)["ppl"] for k, w in evals.items()}
    print(
        f"{a.model}, load {os.getloadavg()[0]:.1f}; original wiki-eval ppl: "
        f"{base['bos']:.2f} (BOS windows), {base['no-bos']:.2f} (no BOS)"
    )
    rows: list[dict[str, Any]] = []
    for budget in (int(x) for x in a.calib_tokens.split(",")):
        calib = make_windows(calib_src, lm.tokenizer, seq_len=a.seq_len, max_tokens=budget)
        for keep_first in (True, False):
            t0 = time.perf_counter()
            opts = CalibrationOptions(fit_include_first_token=keep_first)
            plan = plan_cut(
                lm, calib, "replaceme-ls", CutOptions(n=a.remove, calibration=opts), progress=False
            )
            start = plan.removed[0]
            assert plan.transform is not None
            res = residuals(lm, evals["bos"], start, a.remove, plan.transform.double())
            cut = copy.deepcopy(lm)
            apply_cut_(cut, plan)
            ppl = {k: evaluate_perplexity(cut, w)["ppl"] for k, w in evals.items()}
            row = {
                "calib_tokens": calib.n_tokens,
                "calib_windows": len(calib),
                "fit_first_position": keep_first,
                "span": list(plan.removed),
                "ppl_bos": ppl["bos"],
                "ppl_no_bos": ppl["no-bos"],
                **res,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(
                f"calib {calib.n_tokens:>6} tokens ({len(calib)} windows), first position "
                f"{'in ' if keep_first else 'out'} the fit, span {plan.removed}: ppl "
                f"{ppl['bos']:.4g} (BOS) / {ppl['no-bos']:.4g} (no BOS); held-out "
                f"residual ordinary tokens T: {res['fit_rest']:.3f} "
                f"(T=I {res['id_rest']:.3f}), first position T: {res['fit_first']:.3g} "
                f"(T=I {res['id_first']:.3f})"
            )
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    result = {"model": a.model, "original_ppl": base, "options": vars(a), "rows": rows}
    Path(a.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
