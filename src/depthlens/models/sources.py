"""Kinds of model reference: a packaged name, a ``.gguf`` file, a local folder, a hub id.

:data:`MODEL_SOURCES` holds one :class:`ModelSource` per kind, tried in order by
:func:`~depthlens.models.loading.load_model`: the first kind that accepts a reference (the
``hub`` fallback last) resolves it to a Hugging Face model folder, which
``models/hf_dir.py`` loads. The kind's name is what results record as the model's
``source``, and its folder as ``path``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import depthlens.models.gguf_cache as gguf_cache
from depthlens.errors import DepthlensError
from depthlens.models.hf_dir import LoadOptions
from depthlens.models.registry import PACKAGED, text_model, text_names
from depthlens.registry import Registry, unknown_choice


@dataclass(frozen=True)
class ModelSource:
    """One kind of model reference; its name is the ``source`` that results record."""

    name: str
    takes: str  # the references it takes, for the docs
    path_is: str  # what the recorded ``path`` names, for the docs
    accepts: Callable[[str], bool]
    resolve: Callable[[str, LoadOptions, Path], Path]  # (ref, options, cache) -> model folder
    own_files: bool = False  # a folder depthlens wrote: safetensors only, never pickle
    cut_manifest: bool = False  # may be a depthlens cut whose manifest names skipped sublayers
    last_resort: bool = False  # tried after every other kind, even one registered later


def _resolve_packaged(ref: str, _opts: LoadOptions, cache: Path) -> Path:
    # Through the module, not a bound name: the tests' guard against loading real packaged
    # models outside e2e replaces gguf_cache.ensure_packaged.
    return gguf_cache.ensure_packaged(text_model(ref), cache)


def _resolve_gguf(ref: str, _opts: LoadOptions, cache: Path) -> Path:
    gguf = Path(ref).expanduser()
    if not gguf.is_file():
        raise DepthlensError(f"model file not found: {ref}; check the path")
    return gguf_cache.cache_gguf(gguf, cache)


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith((".", "/", "~"))
        or ref.endswith(".gguf")
        or os.path.exists(ref)
        or ref.count("/") > 1
        or os.sep == "\\"
        and "\\" in ref
    )


def _resolve_local(ref: str, _opts: LoadOptions, _cache: Path) -> Path:
    p = Path(ref).expanduser()
    if not p.exists():
        raise DepthlensError(
            f"model path not found: {ref}; pass a packaged name ({', '.join(text_names())}), "
            "a local Hugging Face model directory, a .gguf file or a hub id"
        )
    if not p.is_dir():
        raise DepthlensError(f"{ref} is a file, not a model directory or a .gguf file")
    return p


def _resolve_hub(ref: str, opts: LoadOptions, _cache: Path) -> Path:
    """The fallback kind: refuse what is no hub id (a packaged-name typo first), else download."""
    from huggingface_hub import snapshot_download

    if ref.count("/") != 1:
        if difflib.get_close_matches(ref, list(PACKAGED), n=1, cutoff=0.6):
            raise DepthlensError(unknown_choice("model", ref, list(PACKAGED)))
        raise DepthlensError(
            f"unknown model '{ref}': not a packaged name ({', '.join(text_names())}), not an "
            "existing path, and not a hub id of the form org/name"
        )
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
    if opts.allow_pickle:
        patterns.append("*.bin")
    try:
        return Path(snapshot_download(ref, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth...
        raise DepthlensError(
            f"hub model '{ref}' is not available: {type(exc).__name__} (offline, or no such "
            "repo). Offline, use a packaged model (`depthlens models`) or a local directory"
        ) from exc


#: Tried in order (the last resort last): the first kind that accepts a reference loads it.
MODEL_SOURCES: Registry[ModelSource] = Registry(
    "model source kind",
    columns=(
        ("source", lambda s: f"`{s.name}`"),
        ("reference", lambda s: s.takes),
        ("recorded `path`", lambda s: s.path_is),
    ),
)
MODEL_SOURCES.register(
    ModelSource(
        "packaged",
        "a packaged name (`depthlens models`); wins over a file or folder of that name",
        "the cached safetensors copy of its GGUF (an encoder: the folder its package ships)",
        accepts=lambda ref: ref in PACKAGED,
        resolve=_resolve_packaged,
        own_files=True,
    )
)
MODEL_SOURCES.register(
    ModelSource(
        "gguf",
        "a path ending in `.gguf`: dequantized to float32 once, then cached",
        "the cached safetensors copy (keyed by the file's path, size and mtime)",
        accepts=lambda ref: ref.endswith(".gguf"),
        resolve=_resolve_gguf,
        own_files=True,
    )
)
MODEL_SOURCES.register(
    ModelSource(
        "local",
        "an existing path, or one starting with `.`, `/` or `~` or holding two `/`: a Hugging "
        "Face model folder, a depthlens cut included (pickle weights only with "
        "`--allow-pickle`)",
        "the folder",
        accepts=_looks_like_path,
        resolve=_resolve_local,
        cut_manifest=True,
    )
)
MODEL_SOURCES.register(
    ModelSource(
        "hub",
        "anything else of the form `org/name`: its hub snapshot (`*.bin` only with "
        "`--allow-pickle`); a near-miss of a packaged name gets a did-you-mean instead",
        "the downloaded snapshot folder",
        accepts=lambda ref: True,
        resolve=_resolve_hub,
        last_resort=True,
    )
)


def model_source(ref: str) -> ModelSource:
    """The first kind of :data:`MODEL_SOURCES` that accepts ``ref`` (``hub`` takes the rest).

    Kinds are tried in registration order, the last resort (``hub``) after all others, so a
    kind registered later still gets the references it accepts.
    """
    ordered = sorted(MODEL_SOURCES.values(), key=lambda s: s.last_resort)  # stable
    return next(s for s in ordered if s.accepts(ref))
