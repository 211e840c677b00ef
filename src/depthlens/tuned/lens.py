"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112) and the lens protocol.

A lens turns a residual state into next-token logits (the
:class:`depthlens.metrics.lens.Readout` protocol). The logit lens
(:class:`depthlens.metrics.lens.Lens`) reads ``softmax(U · final_norm(h))``; the tuned
lens first applies one affine translator per residual state, added to the stream as in the
reference implementation::

    p_l(h) = softmax(U · final_norm(h + A_l h + b_l))

Translator ``l`` reads ``h_l``, the stream entering block ``l`` (l = 0..L-1, so ``h_0`` is
the embedding output and translator ``l`` also reads the output of block ``l-1``); the final
state ``h_L`` is the model's own output and is read without a translator. ``A_l`` and
``b_l`` start at zero, so an untrained tuned lens *is* the logit lens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlens.errors import DepthlensError
from depthlens.metrics.lens import Lens, Readout
from depthlens.metrics.readout import READOUTS, ReadoutSource
from depthlens.metrics.readout import check_lens_arg as check_lens_arg  # the old home
from depthlens.metrics.readout import readout_for as readout_for
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope, check_same_model
from depthlens.tuned.result import LENS_KIND as LENS_KIND  # importers find it here too
from depthlens.tuned.result import META, LensShape, LensTraining, TunedLensResult

WEIGHTS = "translators.safetensors"


class TunedLens(nn.Module):
    """One identity-initialised affine translator per block, before the logit lens."""

    def __init__(self, base: Lens, n_layers: int, d_model: int) -> None:
        super().__init__()
        self.base = base  # a plain dataclass: the model's weights are not our parameters
        self.n_layers = n_layers
        self.d_model = d_model
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        for t in self.translators:
            assert isinstance(t, nn.Linear)
            nn.init.zeros_(t.weight)  # A_l = 0, b_l = 0: step 0 is the logit lens exactly
            nn.init.zeros_(t.bias)

    @property
    def unembed(self) -> nn.Module:
        """The model's unembedding."""
        return self.base.unembed

    def translate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Return h + A_l h + b_l for l < L, and ``h`` itself for the final state (l = L)."""
        if not 0 <= layer <= self.n_layers:
            raise IndexError(f"residual state {layer} outside 0..{self.n_layers}")
        if layer == self.n_layers:
            return h
        t: Any = self.translators[layer]
        x = h.to(device=t.weight.device, dtype=t.weight.dtype)
        return (x + t(x)).to(h.dtype)  # back to the model's dtype for its own modules

    def logits(self, h: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """(N, d) states of residual state ``layer`` -> (N, V) float32 logits."""
        if layer is None:
            raise ValueError("the tuned lens needs the residual-state index of h")
        return self.base.logits(self.translate(h, layer))

    @classmethod
    def for_model(cls, lm: LoadedModel) -> TunedLens:
        """A fresh (identity) tuned lens for ``lm``."""
        if not lm.arch.has_lens:
            raise DepthlensError(f"family '{lm.arch.family}' has no logit lens to tune")
        cfg: Any = getattr(lm.model, "config", None)
        d = int(cfg.get_text_config().hidden_size) if cfg is not None else 0
        lens = cls(Lens.of(lm.model, lm.arch), lm.num_layers, d)
        return lens.to(lm.device)


def save_lens(
    lens: TunedLens, out: str | Path, envelope: Envelope, training: LensTraining | None = None
) -> TunedLensResult:
    """Write ``translators.safetensors`` and ``lens.json`` into the folder ``out``.

    Returns the :class:`TunedLensResult` written as ``lens.json``.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in lens.state_dict().items()}
    save_file(tensors, str(Path(out) / WEIGHTS), metadata={"format": "pt"})
    result = TunedLensResult(
        envelope=envelope,
        lens=LensShape(n_layers=lens.n_layers, d_model=lens.d_model),
        training=training or LensTraining(),
    )
    result.save(Path(out) / META)
    return result


def lens_dir_check(spec: str) -> Path:
    """Validate ``tuned:DIR`` before any model is loaded; returns DIR.

    DIR is either a ``depthlens lens train`` output (``lens.json`` +
    ``translators.safetensors``) or a tuned-lens package folder (``config.json`` +
    ``params.pt``).
    """
    from depthlens.tuned.interop import TL_CONFIG, TL_PARAMS, is_tuned_lens_layout

    path = Path(spec.removeprefix("tuned:"))
    if not path.is_dir():
        raise DepthlensError(
            f"tuned lens folder {path} not found; train one with "
            f"`depthlens lens train REF -o {path}`"
        )
    if is_tuned_lens_layout(path):
        return path
    for name in (META, WEIGHTS):
        if not (path / name).is_file():
            raise DepthlensError(
                f"tuned lens folder {path} lacks {name}; it is neither a `depthlens lens "
                f"train` output nor a tuned-lens folder ({TL_CONFIG} + {TL_PARAMS})"
            )
    return path


def _fill(lens: TunedLens, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Load ``state`` into ``lens``, refusing a gap or extra layers with a fix."""
    for l in range(lens.n_layers):
        for part in ("weight", "bias"):
            key = f"translators.{l}.{part}"
            if key not in state:
                raise DepthlensError(
                    f"tuned lens {folder} lacks the translator of layer {l} "
                    f"({key}); the folder is incomplete: retrain it"
                )
    extra = sorted(set(state) - set(lens.state_dict()))
    if extra:
        raise DepthlensError(
            f"tuned lens {folder} has unexpected tensors {extra[:3]}; it was "
            f"trained for a model with more blocks"
        )
    try:
        lens.load_state_dict(state)
    except RuntimeError as exc:
        raise DepthlensError(f"tuned lens {folder} does not fit this model: {exc}") from exc


def load_tuned_lens_layout(folder: Path, lm: LoadedModel) -> tuple[TunedLens, dict[str, Any]]:
    """A tuned-lens package folder (``config.json`` + ``params.pt``) as a depthlens lens."""
    from depthlens.tuned.interop import read_config, read_translators

    cfg = read_config(folder)
    lens = TunedLens.for_model(lm)
    if (int(cfg["num_hidden_layers"]), int(cfg["d_model"])) != (lens.n_layers, lens.d_model):
        raise DepthlensError(
            f"tuned lens {folder} is for {cfg['num_hidden_layers']} layers of width "
            f"{cfg['d_model']} ({cfg.get('base_model_name_or_path')!r}); this model has "
            f"{lens.n_layers} of width {lens.d_model}: use the lens of this model"
        )
    _fill(lens, read_translators(folder, lens.n_layers), folder)
    lens.to(lm.device)
    info = {
        "kind": "tuned",
        "dir": str(folder),
        "format": "tuned-lens",
        "base_model": cfg.get("base_model_name_or_path"),
    }
    return lens, info


def load_lens(path: str | Path, lm: LoadedModel) -> tuple[TunedLens, dict[str, Any]]:
    """Load a trained tuned lens for ``lm`` (either layout); refuse another model's or a gap."""
    from safetensors.torch import load_file

    from depthlens.tuned.interop import is_tuned_lens_layout

    folder = lens_dir_check(f"tuned:{path}")
    if is_tuned_lens_layout(folder):
        return load_tuned_lens_layout(folder, lm)
    meta = TunedLensResult.load(folder / META)
    check_same_model(meta.model, lm.identity(), "the tuned lens and the model")
    lens = TunedLens.for_model(lm)
    _fill(lens, load_file(str(folder / WEIGHTS)), folder)
    lens.to(lm.device)
    info = {
        "kind": "tuned",
        "dir": str(folder),
        "format": "depthlens",
        "fingerprint": meta.envelope.fingerprint,
        "data": meta.data,
        "tokens": meta.tokens,
        "steps": meta.training.steps,
    }
    return lens, info


def export_lens(src: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a ``depthlens lens train`` folder in the tuned-lens layout (no model needed)."""
    from safetensors.torch import load_file

    from depthlens.tuned.interop import is_tuned_lens_layout, write_tuned_lens

    folder = lens_dir_check(f"tuned:{src}")
    if is_tuned_lens_layout(folder):
        raise DepthlensError(f"{folder} is already in the tuned-lens layout")
    meta = TunedLensResult.load(folder / META)
    n_layers, d_model = meta.n_layers, meta.d_model
    base = str(meta.model.get("path") or meta.model.get("ref") or "")
    write_tuned_lens(Path(out), load_file(str(folder / WEIGHTS)), d_model, n_layers, base)
    return {"from": str(folder), "to": str(out), "n_layers": n_layers, "d_model": d_model}


def _check_folder(folder: str) -> None:
    lens_dir_check(f"tuned:{folder}")


def _load_readout(lm: LoadedModel, folder: str) -> tuple[Readout, dict[str, Any]]:
    lens, info = load_lens(folder, lm)
    lens.eval()
    return lens, info


# The tuned lens is a readout like the logit lens: profile, think and exit pick it with
# ``--lens tuned:DIR`` through depthlens.metrics.readout, which never imports this package.
READOUTS.register(
    ReadoutSource(
        "tuned",
        "softmax(U · final_norm(h + A_l h + b_l)): a trained tuned lens (`depthlens lens train`)",
        _check_folder,
        _load_readout,
        usage="tuned:DIR",
    )
)
