"""A plan written to disk is complete: prune --plan applies exactly the in-memory plan."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from fixtures_saved import save_tiny, write_text

from depthlens.cli.main import main
from depthlens.cut import CutOptions, apply_cut_, load_plan, plan_cut, save_plan
from depthlens.cut.plan_io import maps_path
from depthlens.data import load_text, make_windows
from depthlens.errors import DepthlensError
from depthlens.models.loading import load_model

SEQ, TOKENS = 16, 16 * 12


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    return save_tiny(tmp_path / "m"), write_text(tmp_path / "t.txt", 400)


def _logits(lm, ids: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return lm.model(input_ids=ids, use_cache=False).logits


def test_prune_plan_equals_in_memory_plan(tmp_path: Path) -> None:
    model, text = _setup(tmp_path)
    lm = load_model(str(model))
    windows = make_windows(load_text(str(text)), lm.tokenizer, seq_len=SEQ, max_tokens=TOKENS)
    plan = plan_cut(lm, windows, "replaceme-ls", CutOptions(n=2))
    assert plan.transform is not None and plan.merge_into is not None
    path = tmp_path / "plan.json"
    assert save_plan(plan, path) == [path, tmp_path / "plan.T.safetensors"]
    d = json.loads(path.read_text())
    side = maps_path(path).read_bytes()
    assert d["transforms"]["sha256"] == hashlib.sha256(side).hexdigest()
    assert d["model"]["fingerprint"] == lm.identity()["fingerprint"]

    out = tmp_path / "pruned"
    argv = ["prune", str(model), "--plan", str(path), "-o", str(out), "--seq-len", "16"]
    assert main([*argv, "--quiet"]) == 0
    apply_cut_(lm, plan)  # the in-memory plan, never written or read
    ids = windows.input_ids[:3]
    got = _logits(load_model(str(out)), ids)
    assert got.shape[-1] == _logits(lm, ids).shape[-1]
    torch.testing.assert_close(got, _logits(lm, ids), rtol=0, atol=1e-6)
    # A different plan (plain removal of the same span) gives other logits: the check can fail.
    other = dataclasses.replace(plan, transform=None, merge_into=None)
    bare = load_model(str(model))
    apply_cut_(bare, other)
    assert (got - _logits(bare, ids)).abs().max() > 1e-3


def test_maps_round_trip_and_tampering(tmp_path: Path) -> None:
    model, text = _setup(tmp_path)
    lm = load_model(str(model))
    windows = make_windows(load_text(str(text)), lm.tokenizer, seq_len=SEQ, max_tokens=TOKENS)
    plan = plan_cut(lm, windows, "replaceme-ls", CutOptions(n=1))
    extra = torch.randn(plan.transform.shape, dtype=torch.float64)  # type: ignore[union-attr]
    plan = dataclasses.replace(plan, merges=((3, extra),))
    path = tmp_path / "p.json"
    save_plan(plan, path)
    back = load_plan(path)
    assert back.removed == plan.removed and back.envelope == plan.envelope
    assert torch.equal(back.transform, plan.transform)  # type: ignore[arg-type]
    assert [i for i, _ in back.merges] == [3] and torch.equal(back.merges[0][1], extra)

    side = maps_path(path)
    blob = bytearray(side.read_bytes())
    blob[-1] ^= 1
    side.write_bytes(bytes(blob))
    with pytest.raises(DepthlensError, match="sha256"):
        load_plan(path)
    side.unlink()
    with pytest.raises(DepthlensError, match="missing"):
        load_plan(path)


def test_schema_1_plan_is_read_or_refused(tmp_path: Path) -> None:
    old = {
        "kind": "depthlens.cut_plan",
        "schema_version": 1,
        "version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00",
        "method": "last",
        "num_layers": 4,
        "removed": [1, 2],
        "kept": [0, 3],
        "merge_into": None,
        "has_transform": False,
        "options": {"n": 2},
        "selection": {},
        "fit": {},
        "savings": {},
        "model": {"ref": "x", "num_layers": 4},
        "calibration": {"name": "wiki", "n_tokens": 99, "n_windows": 3, "data": {"seq_len": 33}},
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    plan = load_plan(tmp_path / "old.json")
    assert plan.removed == (1, 2) and plan.tokens["calibration"] == 99
    assert plan.data == {"seq_len": 33} and plan.calibration["n_windows"] == 3
    old.update(method="replaceme-ls", merge_into=0, removed=[1], has_transform=True)
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(DepthlensError, match="schema 1"):
        load_plan(tmp_path / "old.json")


def test_cli_plan_writes_json_and_maps_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, text = _setup(tmp_path)
    out = tmp_path / "p.json"
    argv = [
        "plan",
        str(model),
        "--data",
        str(text),
        "--seq-len",
        str(SEQ),
        "--max-tokens",
        str(TOKENS),
        "--remove",
        "1",
        "-o",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "p.T.safetensors",
        "p.json",
        "t.txt",
    ]
    plan = load_plan(out)
    assert plan.transform is not None and plan.method == "replaceme-ls"
    maps_path(out).unlink()  # only the maps are missing: still an existing output's twin
    out.unlink()
    maps_path(out).write_bytes(b"someone else's file")
    assert main(argv) == 2  # the maps file exists: refused without --overwrite
    assert maps_path(out).read_bytes() == b"someone else's file" and not out.exists()
    capsys.readouterr()
    assert main(["prune", str(model), "-o", str(tmp_path / "x"), "--seq-len", "16"]) == 2
    assert "give --remove N, --ratio r" in capsys.readouterr().err
