"""Options shared by several subcommands, and the helpers that turn them into API calls."""

from __future__ import annotations

import argparse
import sys
import unicodedata
from typing import Any

from depthlens.models.registry import DEFAULT_MODEL

DTYPE_CHOICES = ("float32", "bfloat16", "float16", "fp32", "bf16", "fp16")


class Default(int):
    """An option's default number, told apart from the same number typed by the user.

    argparse turns a typed value into a plain ``int``; a default left alone stays this
    class, so a default can adapt to the model (with the adaptation printed) while a
    value the user chose is refused when it cannot work.
    """


def add_model_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """REF and the loading options."""
    if positional:
        p.add_argument(
            "model",
            nargs="?",
            default=DEFAULT_MODEL,
            metavar="REF",
            help=f"packaged name, local HF dir, .gguf file or hub id (default {DEFAULT_MODEL})",
        )
    g = p.add_argument_group("model loading")
    g.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPE_CHOICES,
        help="weights' dtype: float32 (default), bfloat16 or float16",
    )
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    g.add_argument(
        "--device-map",
        default=None,
        help="'auto' to spread a model larger than one device with accelerate",
    )
    g.add_argument("--arch", default=None, help="force an architecture family (see `models`)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    g.add_argument(
        "--allow-pickle", action="store_true", help="allow pickle weights (pytorch_model.bin)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def add_data_args(p: argparse.ArgumentParser, default: str = "wiki-calib") -> None:
    """--data and the windowing options."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=default,
        help=f"wiki, wiki-calib, wiki-eval, news, a .txt/.jsonl file, or a hub dataset "
        f"(default {default})",
    )
    g.add_argument("--text-field", default="text", help="field of a .jsonl record (text)")
    g.add_argument("--seq-len", type=int, default=Default(512), help="tokens per window (512)")
    g.add_argument("--max-tokens", type=int, default=16384, help="token budget (16384)")
    g.add_argument("--seed", type=int, default=0, help="seed for window and token sampling")


def add_output_args(
    p: argparse.ArgumentParser,
    output_help: str,
    *,
    required: bool = False,
    quiet_help: str | None = "no progress bars",
    overwrite_help: str = "replace an existing output",
) -> None:
    """-o/--output, --overwrite and (unless ``quiet_help`` is None) --quiet."""
    p.add_argument("-o", "--output", required=required, help=output_help)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)
    if quiet_help is not None:
        p.add_argument("--quiet", action="store_true", help=quiet_help)


def add_batch_size_arg(
    g: Any, default: int = 4, what: str = "windows per forward", aliases: tuple[str, ...] = ()
) -> None:
    """--batch-size (``aliases``: older spellings that still work)."""
    g.add_argument(
        "--batch-size",
        *aliases,
        dest="batch_size",
        type=int,
        default=default,
        help=f"{what} ({default})",
    )


def add_first_token_arg(
    g: Any, where: str = "the statistics", aliases: tuple[str, ...] = ()
) -> None:
    """--include-first-token: keep position 0 (BOS / attention sink), left out by default."""
    g.add_argument(
        "--include-first-token",
        *aliases,
        dest="include_first_token",
        action="store_true",
        help=f"keep the first position (BOS / attention sink) in {where}",
    )


def add_lens_kernel_arg(
    g: Any, what: str = "the lens reductions", aliases: tuple[str, ...] = ()
) -> None:
    """--lens-kernel: the fused torch.compile KL kernel or the eager one."""
    g.add_argument(
        "--lens-kernel",
        *aliases,
        dest="lens_kernel",
        choices=("auto", "compiled", "eager"),
        default="auto",
        help=f"fused torch.compile kernel for {what} (auto)",
    )


#: The loading options of :func:`add_model_args`, passed to ``load_model`` by name.
MODEL_OPTIONS = ("dtype", "device", "device_map", "arch", "trust_remote_code", "allow_pickle")


def load_model_from_args(args: argparse.Namespace, ref: str | None = None) -> Any:
    """Load the model named on the command line, with a progress message."""
    from depthlens.models.loading import load_model

    ref = ref or args.model
    status(f"loading {safe_text(ref)} …")
    lm = load_model(ref, **{k: getattr(args, k) for k in MODEL_OPTIONS})
    check_model_limits(lm, args)
    return lm


def load_model_and_windows(args: argparse.Namespace, source: Any = None) -> tuple[Any, Any]:
    """The model and the windows of --data, the text read first so bad input fails early.

    ``source`` is the text when the caller has already read it (after its own checks).
    """
    if source is None:
        source = load_data_from_args(args)
    lm = load_model_from_args(args)
    return lm, load_windows_from_args(args, lm.tokenizer, source=source)


def load_data_from_args(args: argparse.Namespace) -> Any:
    """Check the window options and read the --data text (both need no model)."""
    from depthlens.data import load_text

    check_data_args(args)
    return load_text(args.data, text_field=args.text_field)


def model_context(lm: Any) -> int | None:
    """The longest sequence the model was built for (``max_position_embeddings``), if known."""
    cfg = lm.model.config.get_text_config()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_model_limits(lm: Any, args: argparse.Namespace) -> None:
    """Options that only the loaded model can check: lengths within its context, depth."""
    from depthlens.errors import DepthlensError

    ctx = model_context(lm)
    seq = getattr(args, "seq_len", None)
    if ctx is not None and isinstance(seq, Default) and seq > ctx:  # a default adapts
        status(
            f"--seq-len {seq} (the default) is longer than {safe_text(lm.ref)}'s context of "
            f"{ctx} tokens: using --seq-len {ctx}"
        )
        args.seq_len = ctx
    if isinstance(getattr(args, "seq_len", None), int) and hasattr(args, "max_tokens"):
        check_window_budget(args)
    lengths = [("--seq-len", getattr(args, "seq_len", None))]
    if getattr(args, "prompt_len", None) and not getattr(args, "no_speed", False):
        lengths.append(
            ("--prompt-len + --decode-tokens", args.prompt_len + getattr(args, "decode_tokens", 0))
        )
    for flag, n in lengths:
        if ctx is not None and isinstance(n, int) and n > ctx:
            raise DepthlensError(
                f"{flag} {n} is longer than {lm.ref}'s context of {ctx} tokens "
                f"(max_position_embeddings); use at most {ctx}"
            )
    for flag, key in (("--n-max", "n_max"), ("--late-blocks", "late_blocks")):
        v = getattr(args, key, None)
        if v is not None and v > lm.num_layers:
            raise DepthlensError(
                f"{flag} {v} is more than the model's {lm.num_layers} blocks; use at most "
                f"{lm.num_layers}"
            )


def safe_text(text: str) -> str:
    """Text from a model, a prompt or a path made safe for a terminal.

    ANSI escapes and other control characters (a token can be any string) are shown
    escaped, e.g. ESC as ``x1b``, so they cannot recolour, move or clear the terminal.
    Newlines and tabs stay.
    """
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t" or not (cat.startswith("C") and cat != "Co"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def check_data_args(args: argparse.Namespace) -> None:
    """Fail fast on window options, before any model is loaded."""
    from depthlens.errors import DepthlensError

    if args.seq_len < 2:
        raise DepthlensError(
            f"--seq-len must be at least 2 (a BOS token plus one token to predict), got "
            f"{args.seq_len}; pass e.g. --seq-len 512"
        )
    if not isinstance(args.seq_len, Default):  # a default may still adapt to the model
        check_window_budget(args)


def check_window_budget(args: argparse.Namespace) -> None:
    """--max-tokens holds at least one window of --seq-len."""
    from depthlens.errors import DepthlensError

    if args.max_tokens is not None and args.max_tokens < args.seq_len:
        raise DepthlensError(
            f"--max-tokens {args.max_tokens} is smaller than one window (--seq-len "
            f"{args.seq_len}); raise --max-tokens"
        )


def load_windows_from_args(
    args: argparse.Namespace,
    tokenizer: Any,
    data: str | None = None,
    max_tokens: int | None = None,
    source: Any = None,
) -> Any:
    """Window the text named by --data (or an already loaded ``source``)."""
    from depthlens.data import load_text, make_windows

    src = source if source is not None else load_text(data or args.data, text_field=args.text_field)
    return make_windows(
        src,
        tokenizer,
        seq_len=args.seq_len,
        max_tokens=max_tokens if max_tokens is not None else args.max_tokens,
        seed=args.seed,
    )


def status(msg: str) -> None:
    """One progress line on stderr (stdout stays for results)."""
    print(msg, file=sys.stderr, flush=True)
