"""Load a causal LM (or encoder) by reference: a packaged name, a local dir, a .gguf, a hub id.

The kinds of reference are the records of :data:`~depthlens.models.sources.MODEL_SOURCES`;
the first that accepts a reference resolves it to a model folder, loaded by
``models/hf_dir.py``. A GGUF (packaged or a user's file) is dequantized once into a cached
safetensors copy (``models/gguf_cache.py``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.models.gguf_cache import ensure_packaged
from depthlens.models.hf_dir import LoadOptions, load_dir
from depthlens.models.loaded import DTYPES, LoadedModel, parse_dtype
from depthlens.models.manifest import skip_manifest_sublayers_
from depthlens.models.quiet import quiet_transformers
from depthlens.models.sources import MODEL_SOURCES, model_source
from depthlens.paths import default_cache_dir

# Re-exported: these lived here before loading was split by meaning, and callers import them.
__all__ = [
    "DTYPES",
    "MODEL_SOURCES",
    "LoadedModel",
    "default_cache_dir",
    "ensure_packaged",
    "load_model",
    "parse_dtype",
    "quiet_transformers",
]


def load_model(
    ref: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, str] | None = None,
    offload_folder: str | None = None,
    arch: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: Path | None = None,
    skip_sublayers: bool = False,
) -> LoadedModel:
    """Load ``ref`` and resolve its architecture.

    The first of :data:`MODEL_SOURCES` that accepts ``ref`` resolves it; its name is the
    ``source`` the result records. ``skip_sublayers``: a sublayer cut (``depthlens.json``
    names removed sublayers) gets modules that compute nothing in their place: faster, the
    same outputs, not savable.

    ``device_map`` ("auto" or a dict) hands placement to ``accelerate``; ``allow_pickle`` is
    needed for checkpoints that only have pickle weights (``pytorch_model.bin``).
    """
    cache = cache_dir or default_cache_dir()
    placement = dict(device_map=device_map, max_memory=max_memory, offload_folder=offload_folder)
    opts = LoadOptions(parse_dtype(dtype), placement, trust_remote_code, allow_pickle, arch)
    source = model_source(ref)
    folder = source.resolve(ref, opts, cache)
    if source.own_files:  # files we made: safetensors only
        opts = replace(opts, allow_pickle=False)
    lm = load_dir(folder, ref, source.name, opts)
    if skip_sublayers and source.cut_manifest:
        skip_manifest_sublayers_(lm)
    if device_map is None and device != "cpu":
        try:
            lm.model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise DepthlensError(f"cannot move the model to --device {device}: {exc}") from exc
    lm.model.eval()
    if lm.path is not None:  # as loaded, the weights are those files: their digest is cached
        lm.digests.bind_files(lm.model, Path(lm.path), cache, dtype)
    return lm
