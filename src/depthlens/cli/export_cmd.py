"""``depthlens export``: a thin shell over :func:`depthlens.export.export_gguf`."""

from __future__ import annotations

import argparse

from depthlens.cli.common import status

EXAMPLE = "example: depthlens export out/pruned --gguf out/pruned-q8.gguf --type q8_0"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    p = sub.add_parser(
        "export",
        help="write a (cut) checkpoint as GGUF for llama.cpp",
        description="Write a checkpoint directory of the llama or qwen2 family (e.g. from "
        "`depthlens prune`) as one GGUF file with the tokenizer, with "
        "llama.cpp's tensor names and metadata (from the gguf package's own map).",
        epilog=EXAMPLE,
    )
    p.add_argument(
        "model",
        metavar="PRUNED",
        help="checkpoint directory (config.json, safetensors, tokenizer.json)",
    )
    p.add_argument("--gguf", required=True, metavar="OUT.gguf", help="GGUF file to write")
    p.add_argument(
        "--type", default="f16", dest="kind", help="tensor type: f32 (exact), f16 (default) or q8_0"
    )
    p.add_argument(
        "--tokenizer-pre",
        default=None,
        help="llama.cpp pre-tokenizer name (default: found from the tokenizer, by "
        "llama.cpp's check hash or its tokenizer.json pre_tokenizer)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export and print a one-line summary."""
    from depthlens.export import export_gguf

    info = export_gguf(
        args.model, args.gguf, kind=args.kind, overwrite=args.overwrite, pre=args.tokenizer_pre
    )
    status(
        f"wrote {info['path']} ({info['type']}, {info['block_count']} blocks, "
        f"{info['tensors']} tensors, {info['bytes'] / 2**20:.1f} MiB)"
    )
    return 0
