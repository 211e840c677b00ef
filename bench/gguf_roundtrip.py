"""GGUF round trip on a real model: export f32 / f16 / q8_0, load with transformers, compare.

For each type: file size, export seconds, max |Δ logit|, top-1 agreement and mean
KL(p_checkpoint ‖ p_gguf) over the tokens of a few wiki-eval windows.

    python bench/gguf_roundtrip.py [CHECKPOINT_DIR | PACKAGED_NAME]   # default: smollm2-135m

A packaged name (``depthlens models``: smollm2-135m, qwen2.5-coder-0.5b) uses the model
cache's safetensors copy of it as the checkpoint.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from depthlens.data import load_text, make_windows
from depthlens.export import export_gguf


def checkpoint(arg: str) -> Path:
    """A checkpoint directory: ``arg`` itself, or the cached copy of a packaged model."""
    from depthlens.models.loading import ensure_packaged
    from depthlens.models.registry import PACKAGED
    from depthlens.paths import default_cache_dir

    if arg in PACKAGED:
        return ensure_packaged(PACKAGED[arg], default_cache_dir())
    return Path(arg)


def main() -> None:
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    ck = checkpoint(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck)
    ref_model = AutoModelForCausalLM.from_pretrained(ck, dtype=torch.float32).eval()
    w = make_windows(load_text("wiki-eval"), tok, seq_len=256, max_tokens=1024)
    with torch.no_grad():
        ref = ref_model(input_ids=w.input_ids).logits.float()
    del ref_model
    print(f"checkpoint {ck}: {w.n_tokens} wiki-eval tokens, load average {os.getloadavg()}")
    for kind in ("f32", "f16", "q8_0"):
        t = time.perf_counter()
        info = export_gguf(ck, tmp / f"m-{kind}.gguf", kind=kind)
        secs = time.perf_counter() - t
        back = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=f"m-{kind}.gguf", dtype=torch.float32
        ).eval()
        with torch.no_grad():
            got = back(input_ids=w.input_ids).logits.float()
        del back
        (tmp / f"m-{kind}.gguf").unlink()
        p, q = torch.log_softmax(ref, -1), torch.log_softmax(got, -1)
        kl = float((p.exp() * (p - q)).sum(-1).mean())
        agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
        print(
            f"{kind:>5} ({info['arch']}, pre-tokenizer {info['tokenizer_pre']}): "
            f"{info['bytes'] / 2**20:7.1f} MiB, export {secs:5.1f} s, max |dlogit| "
            f"{float((got - ref).abs().max()):.4g} (logit range {float(ref.abs().max()):.3g}), "
            f"top-1 agreement {agree:.4f}, KL {kl:.3g} nats, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
