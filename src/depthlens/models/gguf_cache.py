"""GGUF files dequantized once into cached safetensors checkpoints.

Packaged GGUF models (and a user's ``.gguf`` file) are dequantized by ``transformers`` once
and cached as safetensors under the cache directory (``$DEPTHLENS_CACHE``, default the user
cache dir), so later loads take about a second instead of ~20.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from depthlens.errors import DepthlensError
from depthlens.io import atomic_dir
from depthlens.models.checks import gguf_problem
from depthlens.models.quiet import quiet_transformers
from depthlens.models.registry import PackagedModel, package_dir, text_model
from depthlens.progress import tqdm_off_if_quiet


def _dequantize_gguf(directory: Path, filename: str, out: Path) -> None:
    """Load a GGUF with transformers and save it as an ordinary safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers(), tqdm_off_if_quiet("transformers.modeling_gguf_pytorch_utils"):
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        gg = AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=filename, dtype=torch.float32
        )
    # save_pretrained refuses GGUF-quantized models; rebuild a plain one with the same
    # weights (bit-identical logits) and save that.
    cfg = gg.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(gg.state_dict())
    with atomic_dir(out, overwrite=True) as tmp, quiet_transformers():
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def ensure_packaged(pm: PackagedModel, cache: Path) -> Path:
    """The model directory of a packaged text model: its own, or the cached copy of its GGUF.

    A GGUF is dequantized once into a safetensors copy in the cache; a directory (the
    encoder's) is loaded where the package put it; a vision network is refused.
    """
    text_model(pm.name)
    out = cache / "models" / pm.cache_name
    if (out / "config.json").is_file():
        return out
    gguf_path = pm.locate(package_dir(pm), cache)
    if gguf_path.is_dir():
        return gguf_path  # an ordinary Hugging Face directory (the encoder): load it as it is
    print(
        f"first use of {pm.name}: dequantizing its GGUF once into {out} (~20-60 s) …",
        file=sys.stderr,
        flush=True,
    )
    _dequantize_gguf(gguf_path.parent, gguf_path.name, out)
    return out


def cache_gguf(path: Path, cache: Path) -> Path:
    """The cached safetensors copy of the GGUF file ``path`` (made on first use).

    Keyed by the file's resolved path, size and mtime: a replaced file is dequantized again.
    """
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    out = cache / "models" / f"gguf-{path.stem}-{key[:12]}"
    if not (out / "config.json").is_file():
        try:
            _dequantize_gguf(path.parent, path.name, out)
        except DepthlensError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DepthlensError(gguf_problem(path, exc)) from exc
    return out
