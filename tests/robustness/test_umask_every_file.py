"""Every file every writing command makes follows the umask: 0644 at 022 (issue 20 case 6).

safetensors and ``mkstemp`` create files 0600 and ``mkdtemp`` folders 0700 whatever the
umask; an output that only its writer can read breaks shared result folders.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_saved import save_tiny, write_text

from depthlens.cli.main import main
from depthlens.io import atomic_dir
from depthlens.models.loading import load_model

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from train_helpers import tiny_args  # noqa: E402  (the train tests' helper)

MASK = 0o022


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(MASK)
    try:
        yield
    finally:
        os.umask(old)


def _wrong_modes(*paths: Path) -> list[str]:
    """Every file and folder under ``paths`` whose mode is not what umask 022 gives."""
    bad = []
    for top in paths:
        every = [top, *top.rglob("*")] if top.is_dir() else [top]
        for p in every:
            want = 0o777 & ~MASK if p.is_dir() else 0o666 & ~MASK
            got = stat.S_IMODE(p.stat().st_mode)
            if got != want:
                bad.append(f"{p.relative_to(top.parent)} {oct(got)}")
    return bad


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("umask")
    return (
        save_tiny(root / "m"),
        write_text(root / "t.txt", 400),
        write_text(root / "e.txt", 200, 9),
    )


def _data(text: Path) -> list[str]:
    return ["--data", str(text), "--seq-len", "16", "--max-tokens", "128", "--quiet"]


def test_prune_plan_and_heal_write_every_file_0644(tmp_path: Path, setup: Any) -> None:
    model, text, held = setup
    pruned, plan, healed = tmp_path / "pruned", tmp_path / "plan.json", tmp_path / "healed"
    cut = ["--method", "replaceme-ls", "--remove", "1", *_data(text)]
    assert main(["prune", str(model), *cut, "-o", str(pruned)]) == 0
    assert main(["plan", str(model), *cut, "-o", str(plan)]) == 0
    heal = ["heal", str(pruned), "--teacher", str(model), "--steps", "1", *_data(text)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*heal, "--eval-data", str(held), "-o", str(healed)]) == 0
    # issue 20.10: heal printed peft's FutureWarning about transformers' own alias
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    assert (pruned / "model.safetensors").is_file()
    # the healed model's depthlens.json names the weights a later load sees (issue 20.1)
    recorded = json.loads((healed / "depthlens.json").read_text())["model"]["weights"]
    assert recorded == load_model(str(healed)).identity()["weights"]
    sidecars = list(tmp_path.glob("plan*.safetensors"))
    assert sidecars and _wrong_modes(pruned, plan, healed, *sidecars) == []


def test_lens_train_writes_every_file_0644(tmp_path: Path, setup: Any) -> None:
    model, text, _ = setup
    out = tmp_path / "lens"
    argv = ["lens", "train", str(model), *_data(text), "--steps", "1", "-o", str(out)]
    assert main(argv) == 0
    assert (out / "translators.safetensors").is_file() and _wrong_modes(out) == []


def test_train_writes_every_file_0644(tmp_path: Path, setup: Any) -> None:
    _, text, _ = setup
    out = tmp_path / "run"
    assert main(tiny_args(text, out, steps=2)) == 0
    assert (out / "model.safetensors").is_file() and _wrong_modes(out) == []


def test_model_cache_folder_follows_the_umask(tmp_path: Path) -> None:
    """The model cache (a dequantized GGUF) is written through atomic_dir like this."""
    from safetensors.torch import save_file

    with atomic_dir(tmp_path / "cached") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
    assert _wrong_modes(tmp_path / "cached") == []
