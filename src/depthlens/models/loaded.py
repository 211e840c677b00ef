"""A loaded model and the identity that traces every result back to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.errors import DepthlensError
from depthlens.models.digest import DigestCache
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
    source: str  # the name of the MODEL_SOURCES record that loaded it ("packaged", "hub"…)
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
