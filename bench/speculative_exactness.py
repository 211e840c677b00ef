"""Diagnose where depthlens's greedy speculative tokens leave plain ``generate`` and why.

Runs plain ``model.generate(do_sample=False)`` (keeping its per-step logits) and
``depthlens.speculate`` (keeping every verification's logits) on the bench's prompts, then
for each prompt prints the first diverging position, the plain run's top-2 logit margin
there, and the largest |Δlogit| between the two runs at that position and at the preceding
ones (where both saw the same tokens). Float noise between a (k+1)-position verify and a
one-position step shows as |Δ| ~ 1e-5 with a divergence only where the margin is that
small; two different computations show as |Δ| of whole logits.

On Qwen2.5-Coder-0.5B (skip:11, k=1) the bench's first "divergence" was the latter: its
BOS is its pad id, and ``generate`` without an attention mask hides it (``--infer-mask``
reproduces that reference: |Δlogit| up to ~8); with a full mask |Δ| is ~1e-5 and the
tokens are identical (docs/SPECULATIVE.md).

    python bench/speculative_exactness.py --model qwen2.5-coder-0.5b --draft skip:11 --k 1
    python bench/speculative_exactness.py --infer-mask --prompts 1   # the bench's old reference
    python bench/speculative_exactness.py --dtype float64            # the same steps in float64
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).parent


def _bench_prompts(lm: Any, n_wiki: int, length: int) -> list[tuple[str, list[int]]]:
    """The prompts of bench/speculative.py (held-out wiki windows and the chat prompt)."""
    spec = importlib.util.spec_from_file_location("bench_speculative", HERE / "speculative.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._prompts(lm, n_wiki, length)


def _draft_vocab(lm: Any, n: int, calib_tokens: int) -> torch.Tensor | None:
    """The reduced draft head the bench's chooser gives (most frequent calibration tokens)."""
    if n <= 0:
        return None
    from depthlens.data import load_text, make_windows
    from depthlens.speculate.heads import frequent_tokens

    w = make_windows(load_text("wiki-calib"), lm.tokenizer, seq_len=128, max_tokens=calib_tokens)
    v = int(lm.model.config.get_text_config().vocab_size)
    return frequent_tokens(w.input_ids[w.attention_mask.bool()], n, v)


def plain_run(
    lm: Any, prompt: list[int], new: int, infer_mask: bool = False
) -> tuple[list[int], list[torch.Tensor]]:
    """Plain greedy tokens and the (V,) logits of each step.

    With ``infer_mask`` no attention mask is passed, so ``generate`` infers one that hides
    every prompt token equal to the pad id (Qwen2.5's BOS is its pad id): the reference the
    bench first used, which is not the model's computation on the prompt.
    """
    ids = torch.tensor([prompt])
    mask = {} if infer_mask else {"attention_mask": torch.ones_like(ids)}
    with torch.inference_mode():
        out = lm.model.generate(
            ids,
            **mask,
            do_sample=False,
            max_new_tokens=new,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences[0, len(prompt) :].tolist(), [z[0].float() for z in out.logits]


class _Diverged(Exception):
    """Raised inside the loop once depthlens's tokens have left plain decoding's."""


def ours_run(
    lm: Any, prompt: list[int], args: Any, vocab: Any, plain: list[int]
) -> tuple[list[int], dict[int, torch.Tensor], Any]:
    """depthlens's tokens (up to the first divergence from ``plain``) and, per generated
    position, the verify logits that chose it."""
    from depthlens.speculate import decode
    from depthlens.speculate.api import run_speculative

    logits_at: dict[int, torch.Tensor] = {}
    emitted = [0]  # tokens emitted before the current verification
    tokens: list[int] = []
    real_first, real_accept = decode.Sampler.first, decode.accept_greedy

    def first(self: Any, logits: torch.Tensor) -> int:
        logits_at[0] = logits[0].float().clone()
        emitted[0] = 1
        tokens.append(real_first(self, logits))
        return tokens[-1]

    def accept(drafted: list[int], logits: torch.Tensor) -> tuple[int, int]:
        a, nxt = real_accept(drafted, logits)
        for j in range(a + 1):  # rows past the first rejection saw a rejected draft
            logits_at[emitted[0] + j] = logits[j].float().clone()
        emitted[0] += a + 1
        tokens.extend([*drafted[:a], nxt])
        if tokens[: len(plain)] != plain[: len(tokens)]:
            raise _Diverged
        return a, nxt

    decode.Sampler.first, decode.accept_greedy = first, accept  # type: ignore[method-assign,assignment]
    stats = None
    try:
        _, stats = run_speculative(
            lm, prompt, args.draft, max_new_tokens=args.new_tokens, k=args.k, vocab_ids=vocab
        )
    except _Diverged:
        pass
    finally:
        decode.Sampler.first, decode.accept_greedy = real_first, real_accept  # type: ignore[method-assign,assignment]
    return tokens, logits_at, stats


def margin(z: torch.Tensor) -> float:
    """Top-1 minus top-2 logit."""
    top = torch.topk(z.double(), 2).values
    return float(top[0] - top[1])


def compare(
    plain: tuple[list[int], list[torch.Tensor]], ours: tuple[list[int], dict[int, torch.Tensor]]
) -> dict[str, Any]:
    """First divergence, margins there, and |Δlogit| up to it."""
    (pt, pz), (ot, oz) = plain, ours
    n = min(len(pt), len(ot))
    at = next((i for i in range(n) if pt[i] != ot[i]), None)
    upto = n if at is None else at + 1  # the diverging position itself saw equal contexts
    deltas = [float((pz[i] - oz[i]).abs().max()) for i in range(upto) if i in oz]
    margins = [margin(pz[i]) for i in range(n if at is None else at)]
    row: dict[str, Any] = {
        "first_divergence": at,
        "max_abs_dlogit_before": max(deltas[:-1] if at is not None else deltas, default=0.0),
        "median_abs_dlogit_before": float(torch.tensor(deltas).median()) if deltas else 0.0,
        "min_plain_margin_before": min(margins, default=None),
    }
    if at is not None:
        row |= {
            "plain_token": pt[at],
            "our_token": ot[at],
            "plain_margin": margin(pz[at]),
            "our_margin": margin(oz[at]) if at in oz else None,
            "abs_dlogit_at": deltas[-1] if at in oz else None,
            "plain_gap_to_ours": float(pz[at][pt[at]] - pz[at][ot[at]]),
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--draft", default="skip:11")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompts", default="0,1,2", help="indices into the bench's prompts")
    ap.add_argument("--draft-vocab", type=int, default=8192, help="0: the full head")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument(
        "--infer-mask", action="store_true", help="plain generate without an attention mask"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from depthlens.models import load_model

    t0 = time.perf_counter()
    print(f"load average: {os.getloadavg()}", flush=True)
    lm = load_model(args.model)
    print(f"loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.dtype == "float64":
        lm.model.to(torch.float64)
    vocab = _draft_vocab(lm, args.draft_vocab, 512)
    prompts = _bench_prompts(lm, 2, 128)
    rows = []
    for i in (int(s) for s in args.prompts.split(",")):
        name, p = prompts[i]
        plain = plain_run(lm, p, args.new_tokens, args.infer_mask)
        print(f"{name}: plain done at {time.perf_counter() - t0:.0f} s", flush=True)
        ot, oz, st = ours_run(lm, p, args, vocab, plain[0])
        row = {"prompt": name, "acceptance": st and st.acceptance, **compare(plain, (ot, oz))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"options": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
