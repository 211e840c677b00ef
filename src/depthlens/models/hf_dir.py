"""Load a Hugging Face model directory (config, weights, tokenizer) as a :class:`LoadedModel`.

Every kind of model reference ends here: a packaged name and a ``.gguf`` file resolve to a
cached safetensors copy, a hub id to its downloaded snapshot (see ``models/sources.py``).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlens.arch.spec import is_causal_lm, resolve_arch
from depthlens.errors import DepthlensError
from depthlens.models.checks import check_config_json, check_loading_info, check_model_dir
from depthlens.models.loaded import LoadedModel
from depthlens.models.quiet import quiet_transformers

#: depthlens's own ``model_type`` values and the module whose ``register_lab()`` teaches
#: transformers the config and model classes (imported only when such a checkpoint loads).
OWN_MODEL_TYPES = {"depthlens_lab": "depthlens.train.model"}


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`~depthlens.models.loading.load_model` was asked to load, for every source."""

    dtype: torch.dtype
    placement: dict[str, Any]  # device_map, max_memory, offload_folder (for accelerate)
    trust_remote_code: bool
    allow_pickle: bool
    arch: str | None  # --arch: a family forced over detection


def _register_own_model_types(path: Path) -> None:
    """Teach transformers depthlens's own model types before it reads ``path``.

    Models trained by ``depthlens train`` with a scheme no standard class expresses are
    saved with ``model_type`` "depthlens_lab"; their class is imported only when needed.
    """
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # AutoConfig reports the problem with its own message
    module = OWN_MODEL_TYPES.get(str(model_type))
    if module is not None:
        # By name, like the metric families: the trainer imports this loader, so an import
        # statement here would make models and train depend on each other.
        importlib.import_module(module).register_lab()


def _read_config(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
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


def _load_weights(path: Path, cfg: Any, opts: LoadOptions) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        dtype=opts.dtype,
        trust_remote_code=opts.trust_remote_code,
        use_safetensors=None if opts.allow_pickle else True,
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
    return model


def _load_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise DepthlensError(
            f"{path} has no usable tokenizer ({type(exc).__name__}); save one beside the model"
        ) from exc


def load_dir(path: Path, ref: str, source: str, opts: LoadOptions) -> LoadedModel:
    """Load the model directory ``path`` (checked first); ``source`` is the kind recorded."""
    check_model_dir(path, opts.allow_pickle)
    check_config_json(path)
    _register_own_model_types(path)
    cfg = _read_config(path, opts.trust_remote_code)
    model = _load_weights(path, cfg, opts)
    tok = _load_tokenizer(path, opts.trust_remote_code)
    spec = resolve_arch(model, opts.arch)  # --arch first: it rescues a model detection cannot place
    return LoadedModel(model, tok, spec, ref=ref, source=source, path=str(path))
