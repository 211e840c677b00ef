"""Checks of a model on disk before and after transformers loads it.

Each turns a silent or misleading failure into one actionable :class:`DepthlensError`: an
unreadable or weightless directory, a damaged ``config.json`` (not a
``--trust-remote-code`` matter), weights that do not match the config (missing,
unexpected or of the wrong shape: never random initialisation), a truncated GGUF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.io import parse_json_object


def check_model_dir(path: Path, allow_pickle: bool) -> None:
    """The directory is readable, has a config.json and weights (safetensors unless allowed)."""
    try:  # an unreadable directory raises PermissionError here, not in transformers
        has_config = (path / "config.json").is_file()
        names = {p.name for p in path.iterdir()}
    except OSError as exc:
        raise DepthlensError(
            f"cannot read the model directory {path}: {exc.strerror or exc}; check that it "
            "exists and is readable"
        ) from exc
    if not has_config:
        raise DepthlensError(
            f"{path} is a directory but not a Hugging Face model (no config.json); "
            "pass a model directory, a .gguf file, or a packaged name"
        )
    has_st = any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names)
    has_pickle = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not has_st and has_pickle and not allow_pickle:
        raise DepthlensError(
            f"{path} has only pickle weights (e.g. pytorch_model.bin), which can run arbitrary "
            "code when loaded; pass --allow-pickle if you trust this checkpoint"
        )
    if not has_st and not has_pickle:
        raise DepthlensError(f"{path} has a config.json but no weight files (*.safetensors)")


def check_config_json(path: Path) -> None:
    """A damaged config.json is a damaged file, not a custom architecture."""
    cfg_path = path / "config.json"
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except OSError:
        return  # _check_model_dir reported unreadable directories; transformers says the rest
    except UnicodeDecodeError as exc:
        raise DepthlensError(
            f"{cfg_path} is not UTF-8 text; re-download or re-save the model"
        ) from exc
    parse_json_object(text, str(cfg_path), "the file is damaged: re-download or re-save the model")


def _names(keys: list[str], limit: int = 4) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_loading_info(path: Path, info: dict[str, Any]) -> None:
    """Weights that do not match the config are an error, never random initialisation."""
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(
        str(m[0]) if isinstance(m, list | tuple) else str(m)
        for m in info.get("mismatched_keys") or []
    )
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing (would be random): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights: {_names(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} weights of the wrong shape: {_names(mismatched)}")
    if parts:
        raise DepthlensError(
            f"the weights in {path} do not match its config.json ({'; '.join(parts)}); check "
            "num_hidden_layers and the sizes in config.json, or re-save the checkpoint"
        )


_TRUNCATED = (
    "cannot reshape array",
    "unpack_from requires a buffer",
    "buffer is smaller",
    "not enough data",
    "unexpected end",
    "mmap length is greater",
)


def gguf_problem(path: Path, exc: Exception) -> str:
    """Say what is wrong with a GGUF file transformers could not read: magic, truncation."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
        size = path.stat().st_size
    except OSError as err:
        return f"cannot read the GGUF file {path}: {err.strerror or err}"
    if magic != b"GGUF":
        return f"{path} is not a GGUF file (it does not start with 'GGUF'); check the path"
    first = " ".join(str(exc).split())[:200]
    if any(s in first for s in _TRUNCATED):
        return (
            f"the GGUF file {path} is truncated ({size:,} bytes; its tensors run past the "
            f"end: {first}); download or copy it again"
        )
    return f"could not read the GGUF file {path}: {first}"
