"""Load a causal LM (or encoder) by reference: a packaged name, a local dir, a .gguf, a hub id.

Packaged GGUF models are dequantized by ``transformers`` once and cached as safetensors under
the cache directory (``$DEPTHLENS_CACHE``, default the user cache dir), so later loads take
about a second instead of ~20.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of, is_causal_lm, resolve_arch
from depthlens.errors import DepthlensError
from depthlens.io import atomic_dir
from depthlens.models.checks import (
    check_config_json,
    check_loading_info,
    check_model_dir,
    gguf_problem,
)
from depthlens.models.digest import DigestCache
from depthlens.models.registry import PACKAGED, PackagedModel, package_dir, text_model, text_names
from depthlens.paths import default_cache_dir
from depthlens.progress import tqdm_off_if_quiet
from depthlens.results import model_fingerprint

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class LoadedModel:
    """A model ready for analysis, with what is needed to trace results back to it."""

    model: nn.Module
    tokenizer: Any
    arch: ArchSpec
    ref: str
    source: str  # "packaged" | "local" | "gguf" | "hub"
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    digests: DigestCache = field(default_factory=DigestCache, repr=False, compare=False)

    @property
    def num_layers(self) -> int:
        """Number of blocks."""
        return len(blocks_of(self.model, self.arch))

    @property
    def device(self) -> torch.device:
        """Device of the input embedding (where inputs go)."""
        dev = next(self.model.parameters()).device
        if dev.type == "meta":  # offloaded by accelerate: inputs go where its hooks compute
            for m in self.model.modules():
                hook_dev = getattr(getattr(m, "_hf_hook", None), "execution_device", None)
                if hook_dev is not None:
                    return torch.device(hook_dev)
        return dev

    def identity(self) -> dict[str, Any]:
        """JSON-able description written into every output."""
        cfg = getattr(self.model, "config", None)
        n_params = sum(p.numel() for p in self.model.parameters())
        cfg_dict = cfg.to_diff_dict() if cfg is not None else {}
        cfg_dict.pop("quantization_config", None)
        ident = {
            "ref": self.ref,
            "source": self.source,
            "path": self.path,
            "class": type(self.model).__name__,
            "model_type": getattr(cfg, "model_type", None),
            "family": self.arch.family,
            "num_layers": self.num_layers,
            "hidden_size": getattr(cfg, "hidden_size", None),
            "n_params": n_params,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "config": _jsonable(cfg_dict),
            # The tensors themselves: one config fits many networks (base and fine-tune).
            "weights": self.digests.of(self.model),
            **self.extra,
        }
        ident["fingerprint"] = model_fingerprint(ident)
        return ident


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def parse_dtype(name: str) -> torch.dtype:
    """Turn ``--dtype`` into a torch dtype, with a clear error."""
    if name not in DTYPES:
        raise DepthlensError(f"unknown --dtype '{name}'; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own logger, progress bars and warnings while loading or saving.

    Scoped to transformers: ``sys.stderr`` is left alone, so our own messages and other
    threads' output still appear (redirecting stderr would swallow them process-wide).
    The previous verbosity and progress-bar setting are restored on exit.
    """
    import warnings

    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"transformers(\.|$)")
            yield
    finally:
        hf_logging.set_verbosity(old)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith((".", "/", "~"))
        or ref.endswith(".gguf")
        or os.path.exists(ref)
        or ref.count("/") > 1
        or os.sep == "\\"
        and "\\" in ref
    )


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

    ``skip_sublayers``: a sublayer cut (``depthlens.json`` names removed sublayers) gets
    modules that compute nothing in their place: faster, the same outputs, not savable.

    ``device_map`` ("auto" or a dict) hands placement to ``accelerate``; ``allow_pickle`` is
    needed for checkpoints that only have pickle weights (``pytorch_model.bin``).
    """
    cache = cache_dir or default_cache_dir()
    placement = dict(device_map=device_map, max_memory=max_memory, offload_folder=offload_folder)
    opts = _LoadOptions(parse_dtype(dtype), placement, trust_remote_code, allow_pickle, arch)
    ours = replace(opts, allow_pickle=False)  # files we made: safetensors only
    if ref in PACKAGED:
        lm = _load_dir(ensure_packaged(text_model(ref), cache), ref, "packaged", ours)
    elif ref.endswith(".gguf"):
        gguf = Path(ref).expanduser()
        if not gguf.is_file():
            raise DepthlensError(f"model file not found: {ref}; check the path")
        lm = _load_dir(_cache_gguf(gguf, cache), ref, "gguf", ours)
    elif _looks_like_path(ref):
        p = Path(ref).expanduser()
        if not p.exists():
            raise DepthlensError(
                f"model path not found: {ref}; pass a packaged name ({', '.join(text_names())}), "
                "a local Hugging Face model directory, a .gguf file or a hub id"
            )
        if not p.is_dir():
            raise DepthlensError(f"{ref} is a file, not a model directory or a .gguf file")
        lm = _load_dir(p, ref, "local", opts)
        if skip_sublayers:
            from depthlens.models.manifest import skip_manifest_sublayers_

            skip_manifest_sublayers_(lm)
    else:
        lm = _load_hub(ref, opts)
    if device_map is None and device != "cpu":
        try:
            lm.model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise DepthlensError(f"cannot move the model to --device {device}: {exc}") from exc
    lm.model.eval()
    if lm.path is not None:  # as loaded, the weights are those files: their digest is cached
        lm.digests.bind_files(lm.model, Path(lm.path), cache, dtype)
    return lm


#: depthlens's own ``model_type`` values and the module whose ``register_lab()`` teaches
#: transformers the config and model classes (imported only when such a checkpoint loads).
OWN_MODEL_TYPES = {"depthlens_lab": "depthlens.train.model"}


def _register_own_model_types(path: Path) -> None:
    """Teach transformers depthlens's own model types before it reads ``path``.

    Models trained by ``depthlens train`` with a scheme no standard class expresses are
    saved with ``model_type`` "depthlens_lab"; their class is imported only when needed.
    """
    import json

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # AutoConfig reports the problem with its own message
    module = OWN_MODEL_TYPES.get(str(model_type))
    if module is not None:
        # By name, like the metric families: the trainer imports this loader, so an import
        # statement here would make models and train depend on each other.
        importlib.import_module(module).register_lab()


@dataclass(frozen=True)
class _LoadOptions:
    """How :func:`load_model` was asked to load, passed on to each kind of source."""

    dtype: torch.dtype
    placement: dict[str, Any]  # device_map, max_memory, offload_folder (for accelerate)
    trust_remote_code: bool
    allow_pickle: bool
    arch: str | None  # --arch: a family forced over detection


def _load_dir(path: Path, ref: str, source: str, opts: _LoadOptions) -> LoadedModel:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    trust_remote_code, allow_pickle = opts.trust_remote_code, opts.allow_pickle

    check_model_dir(path, allow_pickle)
    check_config_json(path)
    _register_own_model_types(path)
    try:
        cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # Only an unknown model type is a --trust-remote-code matter.
        custom = "model type" in first or "trust_remote_code" in first
        fix = (
            "if this is a custom architecture you trust, pass --trust-remote-code"
            if custom
            else "check or re-download config.json"
        )
        raise DepthlensError(f"cannot read the config in {path}: {first}; {fix}") from exc
    kwargs: dict[str, Any] = dict(
        dtype=opts.dtype,
        trust_remote_code=trust_remote_code,
        use_safetensors=None if allow_pickle else True,
        **{k: v for k, v in opts.placement.items() if v is not None},
    )
    auto = AutoModelForCausalLM if is_causal_lm(cfg, opts.arch) else AutoModel
    try:
        with quiet_transformers():
            # Mismatched shapes come back in `info` (then refused below, with their names)
            # instead of transformers' "look at the above report" error.
            loaded: Any = auto.from_pretrained(
                path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        model, info = loaded  # (model, {"missing_keys": …, "unexpected_keys": …, …})
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DepthlensError(
            f"could not load the weights in {path}: {first[:300]}; the checkpoint may be "
            "corrupted or of an unsupported architecture"
        ) from exc
    check_loading_info(path, info)
    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise DepthlensError(
            f"{path} has no usable tokenizer ({type(exc).__name__}); save one beside the model"
        ) from exc
    spec = resolve_arch(model, opts.arch)  # --arch first: it rescues a model detection cannot place
    return LoadedModel(model, tok, spec, ref=ref, source=source, path=str(path))


def _load_hub(ref: str, opts: _LoadOptions) -> LoadedModel:
    from huggingface_hub import snapshot_download

    if ref.count("/") != 1:
        import difflib

        from depthlens.registry import unknown_choice

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
        local = snapshot_download(ref, allow_patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth...
        raise DepthlensError(
            f"hub model '{ref}' is not available: {type(exc).__name__} (offline, or no such "
            "repo). Offline, use a packaged model (`depthlens models`) or a local directory"
        ) from exc
    return _load_dir(Path(local), ref, "hub", opts)


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


def _cache_gguf(path: Path, cache: Path) -> Path:
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
