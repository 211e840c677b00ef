"""The tuned-lens package's folder layout: read and write ``config.json`` + ``params.pt``.

The community's lenses (AlignmentResearch/tuned-lens, ``TunedLens.save``) are a folder
with ``config.json`` (``TunedLensConfig``: ``base_model_name_or_path``, ``d_model``,
``num_hidden_layers``, ``bias``, ``base_model_revision``, ``unembed_hash``,
``lens_type = "linear_tuned_lens"``) and ``params.pt``, ``torch.save`` of
``layer_translators.state_dict()``: keys ``{i}.weight`` (d, d) and ``{i}.bias`` (d,) for
i = 0..L−1. Older files saved the whole lens, with keys ``layer_translators.{i}.weight``;
both are read. The translator is applied the same way in both packages
(h + A_i h + b_i on hidden state i, then final norm and unembedding), so the weights
carry over unchanged.

``params.pt`` is a pickle: it is loaded only with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from depthlens.errors import DepthlensError

TL_CONFIG = "config.json"
TL_PARAMS = "params.pt"
LENS_TYPE = "linear_tuned_lens"


def is_tuned_lens_layout(path: Path) -> bool:
    """Whether ``path`` holds the tuned-lens package's two files."""
    return (path / TL_CONFIG).is_file() and (path / TL_PARAMS).is_file()


def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a tuned-lens folder, checked for the keys depthlens needs."""
    try:
        cfg = json.loads((path / TL_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DepthlensError(f"{path / TL_CONFIG} is not a readable JSON file: {exc}") from exc
    missing = [k for k in ("d_model", "num_hidden_layers") if k not in cfg]
    if missing:
        raise DepthlensError(
            f"{path / TL_CONFIG} lacks {', '.join(missing)}; it is not a tuned-lens config"
        )
    if cfg.get("lens_type", LENS_TYPE) != LENS_TYPE:
        raise DepthlensError(
            f"{path / TL_CONFIG} is a {cfg['lens_type']!r} lens; depthlens reads only "
            f"{LENS_TYPE!r} (affine translators)"
        )
    return dict(cfg)


def read_translators(path: Path, n_layers: int) -> dict[str, torch.Tensor]:
    """``params.pt`` as depthlens's state dict (``translators.{i}.weight|bias``)."""
    try:
        raw = torch.load(path / TL_PARAMS, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error names a class that is not a tensor
        raise DepthlensError(
            f"{path / TL_PARAMS} could not be read as plain tensors "
            f"(torch.load weights_only=True): {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise DepthlensError(f"{path / TL_PARAMS} holds {type(raw).__name__}, not a state dict")
    state = {}
    for key, value in raw.items():
        short = str(key).removeprefix("layer_translators.")
        state[f"translators.{short}"] = value
    want = {f"translators.{i}.{p}" for i in range(n_layers) for p in ("weight", "bias")}
    if set(state) != want:
        lack = sorted(want - set(state))[:3]
        extra = sorted(set(state) - want)[:3]
        raise DepthlensError(
            f"{path / TL_PARAMS} does not hold one affine translator per layer 0..{n_layers - 1}"
            f" (missing {lack}, unexpected {extra}); a lens trained without bias or for "
            "another model cannot be read"
        )
    return state


def write_tuned_lens(
    out: Path, state: dict[str, torch.Tensor], d_model: int, n_layers: int, base_model: str
) -> None:
    """Write ``state`` (depthlens keys) as tuned-lens's ``config.json`` + ``params.pt``.

    ``unembed_hash`` is left null: tuned-lens then skips its unembedding check (its hash
    function is not part of a stable interface to reproduce).
    """
    out.mkdir(parents=True, exist_ok=True)
    params = {
        k.removeprefix("translators."): v.detach().float().cpu().contiguous()
        for k, v in state.items()
    }
    torch.save(params, out / TL_PARAMS)
    cfg = {
        "base_model_name_or_path": base_model,
        "d_model": d_model,
        "num_hidden_layers": n_layers,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": None,
        "lens_type": LENS_TYPE,
    }
    (out / TL_CONFIG).write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
