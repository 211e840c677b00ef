"""Benchmark: greedy decoding with early exit (CALM) vs full greedy decoding, side by side.

Same prompts (windows of wiki-eval), same greedy loop, same process; rounds alternate the
modes so machine noise hits both alike. For each exit rule: measured tokens/s against full
decoding, the FLOP ideal of the depths actually used (blocks only, and with the lens
readouts and the state-propagation K/V fill charged), and the agreement of the generated
tokens with full greedy decoding.

    python bench/early_exit.py --lens tuned:lens/ --rule confidence:0.9 --rule settled:3
    # writes bench/results/early_exit.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).parent / "results" / "early_exit.json"


def _rule(text: str):  # noqa: ANN202
    from depthlens.exit.rules import ExitRule

    kind, _, value = text.partition(":")
    return ExitRule(kind, float(value))


def _ideal(costs: dict[str, Any], depths: list[int], fill: float) -> dict[str, float]:
    """Decode FLOPs of the full model over those of the depths used (prefill excluded)."""
    blocks = costs["blocks"]
    n_layers = len(blocks)
    full = sum(blocks) + costs["head"]
    used = [sum(blocks[:e]) + costs["head"] for e in depths]
    # Each checked depth before the exit costs a readout; each skipped block an attention
    # K/V fill (``fill`` = its share of a block's FLOPs).
    charged = [
        u + (e - 1 if e < n_layers else n_layers - 1) * costs["readout"] + fill * sum(blocks[e:])
        for u, e in zip(used, depths, strict=True)
    ]
    return {
        "ideal_speedup_blocks_only": full / statistics.mean(used),
        "ideal_speedup_with_readouts": full / statistics.mean(charged),
    }


def _attn_share(lm: Any) -> float:
    """FLOP share of a block's attention projections (what the K/V fill recomputes)."""
    blk: Any = lm.model.model.layers[0]
    attn = sum(p.numel() for p in blk.self_attn.parameters() if p.ndim >= 2)
    total = sum(p.numel() for p in blk.parameters() if p.ndim >= 2)
    return attn / total


def _measure(
    lm: Any,
    lens: Any,
    prompts: list[Any],
    modes: list[tuple[str, Any]],
    new_tokens: int,
    rounds: int,
) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Seconds per round (all prompts) of every mode, alternating the order each round."""
    from depthlens.exit.decode import greedy_decode

    secs: dict[str, list[float]] = {m: [] for m, _ in modes}
    outs: dict[str, list[Any]] = {m: [] for m, _ in modes}
    greedy_decode(lm, prompts[0], 4)  # warm-up
    for rnd in range(rounds):
        order = modes if rnd % 2 == 0 else modes[::-1]  # alternate, against drift
        for name, rule in order:
            total = 0.0
            for ids in prompts:
                res = greedy_decode(lm, ids, new_tokens, lens if rule else None, rule)
                total += res.seconds
                if rnd == 0:
                    outs[name].append(res)
            secs[name].append(total)
    return secs, outs


def _row(
    name: str,
    speedup: float,
    tps: float,
    full: list[Any],
    exited: list[Any],
    costs: dict[str, Any],
    share: float,
) -> dict[str, Any]:
    """One rule's line: measured speed-up, FLOP ideals, depth, agreement with full greedy."""
    pairs = [
        (a, b)
        for fo, eo in zip(full, exited, strict=True)
        for a, b in zip(fo.tokens[1:], eo.tokens[1:], strict=True)
    ]
    depths = [d for eo in exited for d in eo.exit_depths[1:]]
    same = sum(fo.tokens == eo.tokens for fo, eo in zip(full, exited, strict=True))
    return {
        "rule": name,
        "tokens_per_s": tps,
        "measured_speedup": speedup,
        **_ideal(costs, depths, share),
        "mean_exit_depth": statistics.mean(depths),
        "token_agreement_with_full_greedy": sum(a == b for a, b in pairs) / len(pairs),
        "identical_sequences": f"{same}/{len(full)}",
        "kv_fill": exited[0].kv_fill,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--lens", default="logit", help="logit or tuned:DIR")
    p.add_argument(
        "--rule",
        action="append",
        default=None,
        help="KIND:THRESHOLD, e.g. confidence:0.9, entropy:0.5, settled:3",
    )
    p.add_argument("--min-depth", type=int, default=1)
    p.add_argument("--prompts", type=int, default=3)
    p.add_argument("--prompt-len", type=int, default=48)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-o", "--output", default=str(OUT))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import dataclasses

    from depthlens.data import load_text, make_windows
    from depthlens.exit.curve import flop_costs
    from depthlens.metrics.readout import readout_for
    from depthlens.models import load_model

    rules = [
        dataclasses.replace(_rule(r), min_depth=args.min_depth)
        for r in (args.rule or ["confidence:0.9", "settled:3"])
    ]
    lm = load_model(args.model)
    for r in rules:
        r.check(lm.num_layers, int(lm.model.config.vocab_size))
    lens, info = readout_for(lm, args.lens)
    win = make_windows(
        load_text("wiki-eval"),
        lm.tokenizer,
        seq_len=args.prompt_len,
        max_tokens=args.prompt_len * args.prompts,
        seed=0,
    )
    prompts = [win.input_ids[i : i + 1] for i in range(len(win))][: args.prompts]
    modes: list[tuple[str, Any]] = [("full", None), *[(r.label(), r) for r in rules]]
    secs, outs = _measure(lm, lens, prompts, modes, args.new_tokens, args.rounds)
    costs = flop_costs(lm, args.prompt_len + args.new_tokens)
    n_tok = args.new_tokens * len(prompts)
    full_tps = n_tok / statistics.median(secs["full"])
    rows = [
        _row(
            name,
            n_tok / statistics.median(secs[name]) / full_tps,
            n_tok / statistics.median(secs[name]),
            outs["full"],
            outs[name],
            costs,
            _attn_share(lm),
        )
        for name, _ in modes[1:]
    ]
    result = {
        "model": args.model,
        "lens": info,
        "threads": args.threads,
        "prompts": len(prompts),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "min_depth": args.min_depth,
        "full_tokens_per_s": full_tps,
        "rules": rows,
        "loadavg": os.getloadavg(),
        "note": "median over rounds of the summed decode time of all prompts; the first "
        "token of each prompt comes from the full prefill and is not counted in "
        "agreement or depth",
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"full greedy: {full_tps:.2f} tok/s  (load average {os.getloadavg()[0]:.1f})")
    for r in rows:
        print(
            f"{r['rule']:>16}: {r['tokens_per_s']:.2f} tok/s, measured x"
            f"{r['measured_speedup']:.2f}, ideal x{r['ideal_speedup_blocks_only']:.2f} "
            f"(blocks only) / x{r['ideal_speedup_with_readouts']:.2f} (with readouts), "
            f"depth {r['mean_exit_depth']:.1f}, agreement "
            f"{100 * r['token_agreement_with_full_greedy']:.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
