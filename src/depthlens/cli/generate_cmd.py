"""``depthlens generate`` (exact speculative decoding) and ``depthlens draft`` (choose one)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from depthlens.cli.common import (
    Default,
    add_data_args,
    add_model_args,
    add_output_args,
    load_model_from_args,
    load_windows_from_args,
    safe_text,
    status,
)

GEN_EXAMPLE = (
    "examples:\n"
    "  depthlens generate smollm2-135m --draft exit:12 --draft-vocab 4096 --max-new-tokens 64 "
    '"The history of"\n'
    "  depthlens draft smollm2-135m --draft-vocab 4096 -o draft.json\n"
    '  depthlens generate smollm2-135m --draft choice:draft.json --max-new-tokens 64 "Hello"'
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``draft``."""
    g = sub.add_parser(
        "generate",
        help="exact speculative decoding with the model's own depth as the draft",
        description="Generate with a cheap draft (blocks skipped, an early exit, or a cut "
        "checkpoint) verified by the full model: greedy output is token for token "
        "generate(do_sample=False); sampled output has the full model's distribution.",
        epilog=GEN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("model", metavar="REF", help="packaged name, local HF dir, .gguf or hub id")
    add_model_args(g, positional=False)
    g.add_argument("prompt", help="the prompt text")
    from depthlens.speculate.kinds import draft_usage

    g.add_argument(
        "--draft",
        required=True,
        help=f"{draft_usage()} | choice:DRAFT.json (what `depthlens draft` chose)",
    )
    g.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (64)")
    g.add_argument("-k", type=int, default=None, help="draft tokens per verification (4)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    g.add_argument(
        "--draft-vocab",
        type=int,
        default=None,
        metavar="N",
        help="draft head reads only the N most frequent tokens of --data (FR-Spec)",
    )
    g.add_argument("--data", default="wiki-calib", help="text for --draft-vocab (wiki-calib)")
    add_output_args(g, "write the result JSON here", quiet_help=None)
    g.set_defaults(func=run_generate, text_field="text", seq_len=None, max_tokens=16384)
    _register_draft(sub)


def _register_draft(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "draft",
        help="choose a speculative draft: agreement on calibration text + a measured cost model",
        description="Score exit depths (logit lens, and a tuned lens with --tuned) and greedily "
        "grown skip sets by top-1 agreement with "
        "the full model, time a block, the head, a k-token verify and the step overhead, "
        "and recommend the draft and k with the highest predicted tokens/s.",
        epilog="examples:\n  depthlens draft smollm2-135m --draft-vocab 4096 -o draft.json\n"
        "  depthlens lens train smollm2-135m -o lens/ && "
        "depthlens draft smollm2-135m --tuned lens/ --draft-vocab 4096 -o draft.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(d)
    add_data_args(d)
    d.set_defaults(seq_len=Default(128), max_tokens=512)
    d.add_argument("--draft-vocab", type=int, default=None, metavar="N", help="reduced draft head")
    d.add_argument("--max-skip", type=int, default=None, help="largest skip set (L/2)")
    d.add_argument(
        "--tuned",
        default=None,
        metavar="DIR",
        help="also score exit:E:tuned:DIR drafts read through this trained tuned lens "
        "(`depthlens lens train` output or a tuned-lens folder)",
    )
    d.add_argument("--measure-tokens", type=int, default=32, help="tokens per timed run (32)")
    add_output_args(d, "write the choice JSON here")
    d.set_defaults(func=run_draft)


def _check_args(args: argparse.Namespace) -> Any:
    """Every check that needs no model: the spec, k, the token budget, a cut's manifest."""
    from depthlens.speculate.api import check_options
    from depthlens.speculate.kinds import parse_draft

    if args.draft.startswith("choice:"):
        return None
    spec = parse_draft(args.draft)  # each kind's own checks, a cut's manifest among them
    check_options(args.max_new_tokens, args.k if args.k is not None else 4, args.temperature)
    return spec


def _prompt_ids(lm: Any, args: argparse.Namespace) -> list[int]:
    tok = lm.tokenizer
    if args.chat:
        msgs = [{"role": "user", "content": args.prompt}]
        out = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)  # BatchEncoding in 5.x
    return list(tok(args.prompt)["input_ids"])


def run_generate(args: argparse.Namespace) -> int:
    """Load, generate, print the text (stdout) and the acceptance (stderr)."""
    import torch

    from depthlens.speculate.api import check_options
    from depthlens.speculate.kinds import draft_kind

    spec = _check_args(args)
    choice = _read_choice(args) if spec is None else None
    lm = load_model_from_args(args)
    prompt = _prompt_ids(lm, args)
    if choice is not None and choice.plain:
        return _plain(lm, prompt, args, choice)
    vocab, k = None, args.k if args.k is not None else 4
    if choice is not None:
        rec = choice.recommended
        spec_text, k = rec["draft"], args.k or rec["k"]
        vocab = torch.tensor(choice.vocab_ids) if choice.vocab_ids else None
        check_options(args.max_new_tokens, k, args.temperature)
    else:
        spec_text = spec.text
        vocab = _vocab(lm, args) if args.draft_vocab else None
    draft_lm = None
    if spec is not None and draft_kind(spec).separate_model:
        draft_lm = load_model_from_args(args, ref=str(spec.path))
    from depthlens.speculate import speculate

    res = speculate(
        lm,
        prompt,
        spec_text,
        max_new_tokens=args.max_new_tokens,
        k=k,
        temperature=args.temperature,
        seed=args.seed,
        vocab_ids=vocab,
        draft_lm=draft_lm,
    )
    print(safe_text(lm.tokenizer.decode(res.generated)))
    t = res.timing
    status(
        f"{len(res.generated)} tokens, {t['tokens_per_s']:.1f} tokens/s; draft {spec_text} k={k}: "
        f"acceptance {res.acceptance:.2f}, {res.mean_accepted_length:.2f} tokens per verify"
    )
    if args.output:
        res.save(args.output)
        status(f"wrote {args.output}")
    return 0


def _vocab(lm: Any, args: argparse.Namespace) -> Any:
    from depthlens.cli.common import model_context
    from depthlens.speculate.heads import frequent_tokens

    # Windows only to count tokens: 512 or the model's context, whichever is shorter.
    args.seq_len = min(512, model_context(lm) or 512)
    w = load_windows_from_args(args, lm.tokenizer)
    cfg = lm.model.config.get_text_config()
    return frequent_tokens(w.input_ids[w.attention_mask.bool()], args.draft_vocab, cfg.vocab_size)


def _read_choice(args: argparse.Namespace) -> Any:
    from depthlens.speculate.recommend import DraftChoice

    return DraftChoice.load(args.draft.removeprefix("choice:"))


def _plain(lm: Any, prompt: list[int], args: argparse.Namespace, choice: Any) -> int:
    """The cost model predicts a loss: say so and decode plainly with ``generate``."""
    import torch

    best = choice.recommended
    status(
        f"the cost model predicts x{best['predicted_speedup']:.2f} for the best draft "
        f"({best['draft']}, k={best['k']}): decoding plainly instead"
    )
    kw: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    kw.update(
        {"do_sample": True, "temperature": args.temperature}
        if args.temperature > 0
        else {"do_sample": False}
    )
    torch.manual_seed(args.seed)
    with torch.inference_mode():
        ids_t = torch.tensor([prompt])
        # A full mask: else generate hides prompt tokens equal to the pad id (Qwen2.5's BOS).
        out = lm.model.generate(ids_t, attention_mask=torch.ones_like(ids_t), **kw)
    ids = out[0, len(prompt) :].tolist()
    print(safe_text(lm.tokenizer.decode(ids)))
    if args.output:
        from depthlens.io import atomic_write_json

        atomic_write_json(args.output, {"tokens": ids, "fallback": "plain", "choice": best})
    return 0


def run_draft(args: argparse.Namespace) -> int:
    """Choose, measure, print the table and predicted vs measured speed-up."""
    from depthlens.speculate.recommend import choose_draft, measure_choice

    if args.tuned is not None:
        from depthlens.tuned.lens import lens_dir_check

        lens_dir_check(args.tuned)  # a missing or incomplete folder fails before the load
    lm = load_model_from_args(args)
    windows = load_windows_from_args(args, lm.tokenizer)
    choice = choose_draft(
        lm,
        windows,
        draft_vocab=args.draft_vocab,
        max_skip=args.max_skip,
        tuned=args.tuned,
        progress=not args.quiet,
    )
    best = choice.recommended
    if args.tuned is not None:
        _print_exit_table(choice.candidates)
    for r in sorted(choice.candidates, key=lambda r: -r["predicted_speedup"])[:8]:
        print(
            f"{r['draft']:<28} blocks {r['n_blocks']:>3}  acceptance {r['acceptance']:.2f}  "
            f"k={r['k']}  predicted x{r['predicted_speedup']:.2f}"
        )
    if not choice.plain:
        prompt = windows.input_ids[0].tolist()
        m = measure_choice(lm, choice, prompt, args.measure_tokens)
        choice = dataclasses.replace(choice, measured=m)
        print(
            f"recommended {best['draft']} k={best['k']}: "
            f"predicted x{best['predicted_speedup']:.2f}, "
            f"measured x{m['speedup_median']:.2f} (acceptance {m['acceptance']:.2f}, "
            f"{m['mean_accepted_length']:.2f} tokens per verify)"
        )
    else:
        print(
            f"no draft is predicted to beat plain decoding (best x{best['predicted_speedup']:.2f})"
        )
    if args.output:
        choice.save(args.output)
        status(f"wrote {args.output}")
    return 0


def _print_exit_table(rows: list[dict[str, Any]]) -> None:
    """Per exit depth E: the logit lens's and the tuned lens's agreement and prediction."""
    logit = {
        r["n_blocks"]: r
        for r in rows
        if r["draft"].startswith("exit:") and ":" not in r["draft"][5:]
    }
    tuned = {r["n_blocks"]: r for r in rows if ":tuned:" in r["draft"]}
    print("exit E  logit: acceptance  predicted  | tuned: acceptance  predicted")
    for e in sorted(set(logit) & set(tuned)):
        a, b = logit[e], tuned[e]
        print(
            f"{e:>6}  {a['acceptance']:>17.3f}  x{a['predicted_speedup']:<8.2f} | "
            f"{b['acceptance']:>17.3f}  x{b['predicted_speedup']:.2f} (k={b['k']})"
        )
