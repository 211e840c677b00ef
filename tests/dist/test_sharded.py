"""Models larger than a device: accelerate placement (``device_map``) keeps hooks working.

A tiny model saved to disk is loaded with a ``max_memory`` far below its size, so
accelerate splits it between the CPU and disk offload (weights on the meta device
between forwards); the profile must equal the unsplit one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import random_windows
from fixtures_saved import save_tiny, write_text

from depthlens.arch.spec import blocks_of
from depthlens.models import load_model
from depthlens.profiling import ProfileOptions, profile
from depthlens.profiling.result import Profile

OPTS = ProfileOptions(batch_size=2, lens_kernel="eager")
TOL = 1e-6


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("sharded") / "tiny-llama")


@pytest.fixture(scope="module")
def unsplit(saved: Path) -> Profile:
    return profile(load_model(str(saved)), random_windows(n=4), OPTS, progress=False)


def _assert_same(a: Profile, b: Profile) -> None:
    assert a.tokens == b.tokens
    for name, values in a.metrics.items():
        for x, y in zip(values, b.metrics[name], strict=True):
            assert math.isclose(x, y, rel_tol=TOL, abs_tol=TOL), (name, x, y)
    for ra, rb in zip(a.angular_distance, b.angular_distance, strict=True):
        for x, y in zip(ra, rb, strict=True):
            assert (x is None and y is None) or math.isclose(x, y, rel_tol=TOL, abs_tol=TOL)
    assert a.prediction_depth == b.prediction_depth


@pytest.mark.parametrize(
    ("budget", "expect"),
    [("60KB", {"cpu", "disk"}), ("1KB", {"disk"})],
    ids=["cpu+disk", "all-disk"],
)
def test_offloaded_model_profiles_like_unsplit(
    saved: Path, unsplit: Profile, tmp_path: Path, budget: str, expect: set[str]
) -> None:
    lm = load_model(
        str(saved), device_map="auto", max_memory={"cpu": budget},
        offload_folder=str(tmp_path / "offload"),
    )
    placed = set(lm.model.hf_device_map.values())
    assert placed == expect, lm.model.hf_device_map  # really split / offloaded
    assert any(p.device.type == "meta" for p in lm.model.parameters())
    assert lm.device.type == "cpu"  # inputs go where accelerate computes, not to meta
    assert lm.identity()["n_params"] == unsplit.model["n_params"]
    split = profile(lm, random_windows(n=4), OPTS, progress=False)
    _assert_same(unsplit, split)
    # our hooks are gone again; accelerate's own (``_hf_hook``) are untouched
    for block in blocks_of(lm.model, lm.arch):
        assert not block._forward_hooks and not block._forward_pre_hooks
        assert hasattr(block, "_hf_hook")


def test_cli_device_map_auto(saved: Path, tmp_path: Path) -> None:
    from depthlens.cli.main import main

    text = write_text(tmp_path / "t.txt", 600)
    base = [
        "profile", str(saved), "--data", str(text), "--seq-len", "16", "--max-tokens", "96",
        "--lens-kernel", "eager", "--quiet",
    ]
    assert main([*base, "-o", str(tmp_path / "plain.json")]) == 0
    assert main([*base, "--device-map", "auto", "-o", str(tmp_path / "auto.json")]) == 0
    plain, auto = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "auto"))
    assert plain["metrics"] == auto["metrics"]
    assert plain["angular_distance"] == auto["angular_distance"]
