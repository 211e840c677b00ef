"""``depthlens repr`` and ``depthlens similarity``: representations across depth."""

from __future__ import annotations

import argparse
from typing import Any

from depthlens.cli.common import (
    Default,
    add_batch_size_arg,
    add_data_args,
    add_first_token_arg,
    add_output_args,
    status,
)
from depthlens.errors import DepthlensError


def _add_common(p: argparse.ArgumentParser) -> None:
    add_data_args(p, default="wiki-calib")
    p.set_defaults(seq_len=Default(256), max_tokens=16384)
    g = p.add_argument_group("representations")
    g.add_argument(
        "--max-samples",
        type=int,
        default=Default(2000),
        help="geometry sample (tokens) or probe-training examples (2000)",
    )
    g.add_argument(
        "--test-samples",
        type=int,
        default=1000,
        help="held-out examples of labelled data; OOD splits corrupt them (1000)",
    )
    add_batch_size_arg(g)
    g.add_argument("--cka-batch", type=int, default=256, help="examples per HSIC minibatch (256)")
    g.add_argument(
        "--pool",
        default=None,
        help="a text: token (default, every token), last or mean (one point per window); "
        "labelled text: mean (default), last, first",
    )
    g.add_argument(
        "--exclude-massive",
        action="store_true",
        help="drop states whose norm exceeds --massive-k × the layer's median before the "
        "geometry (they are counted either way)",
    )
    g.add_argument(
        "--massive-k", type=float, default=10.0, help="massive-activation threshold k (10)"
    )
    g.add_argument(
        "--corruptions",
        default=None,
        help="OOD corruptions, comma-separated (default: all for the data kind)",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="vision: resize images to this many pixels (default the network's 224)",
    )
    g.add_argument(
        "--probe", action="store_true", help="require linear probes (refuse data without labels)"
    )
    add_first_token_arg(g)
    m = p.add_argument_group("model loading")
    m.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    m.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    add_output_args(
        p,
        "write the result JSON here",
        quiet_help="no table on stdout",
        overwrite_help="replace existing outputs",
    )
    p.add_argument("--html", help="also write the HTML page here")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``repr`` and ``similarity``."""
    r = sub.add_parser(
        "repr",
        help="anisotropy, intrinsic dimension, CKA, probes and neural collapse per layer",
        description="Representation metrics per layer of a causal LM, a text encoder "
        "(all-minilm-l6-v2) or a vision network (mobilenet-v2). A text (wiki-calib, news) "
        "gives token states; labelled data (text-domain, fashion-mnist, cifar10) adds linear "
        "probes (held-out and OOD accuracy) and neural collapse.",
        epilog="examples:\n  depthlens repr smollm2-135m --data wiki-calib -o repr.json\n"
        "  bash scripts/setup-datasets.sh   # once: Fashion-MNIST and sample photos (Debian)\n"
        "  depthlens repr mobilenet-v2 --data fashion-mnist --max-samples 2000 -o mnv2.json "
        "--html mnv2.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "model",
        metavar="REF",
        help="smollm2-135m, all-minilm-l6-v2, mobilenet-v2, a local HF dir or hub id",
    )
    _add_common(r)
    r.set_defaults(func=run_repr)
    s = sub.add_parser(
        "similarity",
        help="linear CKA between every layer of two models on the same inputs",
        description="Streamed linear CKA (unbiased minibatch HSIC, Nguyen et al. 2021) "
        "between each layer of model A and each layer of model B on the same inputs.",
        epilog="example: depthlens similarity smollm2-135m out/pruned --data wiki-eval "
        "-o cka.json --html cka.html",
    )
    s.add_argument("model", metavar="A", help="first model")
    s.add_argument("model_b", metavar="B", help="second model (same tokenizer for text)")
    _add_common(s)
    s.set_defaults(func=run_similarity)


def options_from_args(args: argparse.Namespace) -> Any:
    """ReprOptions from the flags (validated)."""
    from depthlens.repr import ReprOptions

    corr = None
    if args.corruptions:
        corr = tuple(c.strip() for c in str(args.corruptions).split(",") if c.strip())
    opts = ReprOptions(
        max_samples=args.max_samples,
        test_samples=args.test_samples,
        seed=args.seed,
        include_first_token=args.include_first_token,
        pool=args.pool,
        batch_size=args.batch_size,
        cka_batch=args.cka_batch,
        corruptions=corr,
        probe=args.probe,
        image_size=args.image_size,
        exclude_massive=args.exclude_massive,
        massive_k=args.massive_k,
    )
    opts.validate()
    return opts


def _prepare(args: argparse.Namespace, refs: list[str]) -> tuple[Any, Any, Any]:
    """Validate everything that needs no model, then load data and models."""
    from depthlens.cli.common import check_data_args
    from depthlens.data.labelled import LABELLED
    from depthlens.io import check_output_path
    from depthlens.repr import load_data, load_repr_model
    from depthlens.repr.api import check_pairing

    outs = [check_output_path(p, args.overwrite) if p else None for p in (args.output, args.html)]
    opts = options_from_args(args)
    for ref in refs:
        check_pairing(ref, args.data)
    labelled = args.data in LABELLED
    if not labelled:
        check_data_args(args)
        if opts.probe:
            raise DepthlensError(
                f"linear probes need labelled data, and --data {args.data} has no labels; pass "
                "--data text-domain (text), fashion-mnist or cifar10 (images)"
            )
    data = load_data(args.data, opts) if labelled else None
    models = []
    for ref in refs:
        status(f"loading {ref} …")
        models.append(load_repr_model(ref, device=args.device, dtype=args.dtype))
    if data is None:
        from depthlens.cli.common import check_window_budget, load_windows_from_args

        check_window_budget(args)  # a default --seq-len was not checked before loading
        data = load_windows_from_args(args, models[0].tokenizer)
        opts = _fit_samples(args, opts, data)
    return outs, (opts, data), models


def _fit_samples(args: argparse.Namespace, opts: Any, windows: Any) -> Any:
    """The default --max-samples shrinks to the points there are (a typed value is kept).

    A point is a real token with ``--pool token``, a window with ``last`` / ``mean``.
    """
    import dataclasses

    from depthlens.repr.run import count_tokens

    if getattr(opts, "pool", "token") == "token":
        n = count_tokens(windows.attention_mask, opts.include_first_token)
        what = "tokens"
    else:
        n = int(windows.attention_mask.shape[0])
        what = f"windows (--pool {opts.pool})"
    if not isinstance(args.max_samples, Default) or n >= opts.max_samples or n < 3:
        return opts  # a typed value too large is refused by the analysis, with the fix
    status(
        f"--max-samples {opts.max_samples} (the default) is more than the {n} {what} of "
        f"--max-tokens {args.max_tokens}: sampling all {n}"
    )
    return dataclasses.replace(opts, max_samples=n)


def _finish(res: Any, outs: list[Any], args: argparse.Namespace) -> None:
    from depthlens.repr.report import summary_lines, write_repr_page

    if not args.quiet:
        print("\n".join(summary_lines(res.kind, res.payload())))
    if outs[0]:
        res.save(outs[0])
        status(f"wrote {outs[0]}")
    if outs[1]:
        write_repr_page(outs[1], res)
        status(f"wrote {outs[1]}")


def run_repr(args: argparse.Namespace) -> int:
    """Validate, load, analyse, print, write."""
    from depthlens.repr import analyse_repr

    outs, (opts, data), models = _prepare(args, [args.model])
    status("computing representation metrics …")
    _finish(analyse_repr(models[0], data, opts), outs, args)
    return 0


def run_similarity(args: argparse.Namespace) -> int:
    """Validate, load both models, stream CKA, print, write."""
    from depthlens.repr import similarity

    if args.model_b is None:
        raise DepthlensError("similarity needs two models: depthlens similarity A B --data ...")
    outs, (opts, data), models = _prepare(args, [args.model, args.model_b])
    status("streaming CKA between the two models …")
    _finish(similarity(models[0], models[1], data, opts), outs, args)
    return 0
