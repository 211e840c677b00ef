"""The tuned-lens package's layout (config.json + params.pt): read, write, same KL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import random_windows, wrap_tiny
from torch import nn

from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.metrics.catalog.lens import LENS_KL
from depthlens.metrics.lens import Lens
from depthlens.results import Envelope
from depthlens.tuned.evaluate import compare_lenses
from depthlens.tuned.lens import TunedLens, load_lens, readout_for, save_lens


def _random_translators(d: int, n: int) -> nn.ModuleList:
    gen = torch.Generator().manual_seed(7)
    mods = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
    with torch.no_grad():
        for m in mods:
            assert isinstance(m, nn.Linear)
            m.weight.copy_(torch.randn(d, d, generator=gen) * 0.05)
            m.bias.copy_(torch.randn(d, generator=gen) * 0.5)
    return mods


def _write_as_tuned_lens_does(
    folder: Path, mods: nn.ModuleList, d: int, *, prefix: str = ""
) -> None:
    """What ``TunedLens.save`` writes: ``layer_translators.state_dict()`` and its config."""
    folder.mkdir()
    state = {prefix + k: v for k, v in mods.state_dict().items()}  # "0.weight", "0.bias", …
    torch.save(state, folder / "params.pt")
    config = {
        "base_model_name_or_path": "tiny-llama",
        "d_model": d,
        "num_hidden_layers": len(mods),
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": "0123abcd",
        "lens_type": "linear_tuned_lens",
    }
    (folder / "config.json").write_text(json.dumps(config))


def _native(folder: Path, lm, mods: nn.ModuleList) -> TunedLens:  # type: ignore[no-untyped-def]
    lens = TunedLens.for_model(lm)
    lens.translators.load_state_dict(mods.state_dict())
    folder.mkdir()
    save_lens(lens, folder, Envelope(kind="depthlens.tuned_lens", model=lm.identity()))
    return lens


def test_tuned_lens_layout_gives_the_native_kl(tmp_path: Path) -> None:
    lm = wrap_tiny("llama")
    d = lm.model.config.hidden_size
    mods = _random_translators(d, lm.num_layers)
    _write_as_tuned_lens_does(tmp_path / "tl", mods, d)
    _native(tmp_path / "native", lm, mods)
    tl, info = load_lens(tmp_path / "tl", lm)
    assert info["format"] == "tuned-lens" and info["base_model"] == "tiny-llama"
    native, _ = load_lens(tmp_path / "native", lm)
    w = random_windows(n=4, seq_len=16)
    sums = compare_lenses(
        lm, w, {"tl": tl, "native": native, "logit": Lens.of(lm.model, lm.arch)}, progress=False
    )
    a, b = sums["tl"].means()[LENS_KL.name], sums["native"].means()[LENS_KL.name]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-6
    assert a != sums["logit"].means()[LENS_KL.name]  # the translators did something


def test_old_whole_lens_keys_are_read(tmp_path: Path) -> None:
    lm = wrap_tiny("llama")
    d = lm.model.config.hidden_size
    mods = _random_translators(d, lm.num_layers)
    _write_as_tuned_lens_does(tmp_path / "tl", mods, d, prefix="layer_translators.")
    lens, _ = readout_for(lm, f"tuned:{tmp_path / 'tl'}")
    assert isinstance(lens, TunedLens)
    assert torch.equal(lens.translators[1].weight, mods[1].weight)  # type: ignore[index]


def test_export_then_reload_is_identical(tmp_path: Path) -> None:
    lm = wrap_tiny("llama")
    d = lm.model.config.hidden_size
    native = _native(tmp_path / "native", lm, _random_translators(d, lm.num_layers))
    out = tmp_path / "exported"
    assert main(["lens", "export", str(tmp_path / "native"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.pt"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_hidden_layers"] == lm.num_layers and cfg["lens_type"] == "linear_tuned_lens"
    raw = torch.load(out / "params.pt", weights_only=True)
    assert set(raw) == {f"{i}.{p}" for i in range(lm.num_layers) for p in ("weight", "bias")}
    back, _ = load_lens(out, lm)
    for k, v in native.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    assert main(["lens", "export", str(tmp_path / "native"), "-o", str(out)]) == 2  # exists


def test_unsafe_or_mismatched_files_are_refused(tmp_path: Path) -> None:
    lm = wrap_tiny("llama")
    d = lm.model.config.hidden_size
    mods = _random_translators(d, lm.num_layers)
    _write_as_tuned_lens_does(tmp_path / "pickle", mods, d)
    torch.save({"0.weight": Path("not a tensor")}, tmp_path / "pickle" / "params.pt")
    with pytest.raises(DepthlensError, match="weights_only=True"):
        load_lens(tmp_path / "pickle", lm)
    short = _random_translators(d, lm.num_layers - 1)
    _write_as_tuned_lens_does(tmp_path / "short", short, d)
    with pytest.raises(DepthlensError, match="layers of width"):
        load_lens(tmp_path / "short", lm)
    (tmp_path / "neither").mkdir()
    with pytest.raises(DepthlensError, match="tuned-lens folder"):
        readout_for(lm, f"tuned:{tmp_path / 'neither'}")
