"""Every result carries one envelope: kind, model (with fingerprint), data, options, tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import random_windows, wrap_tiny

from depthlens._version import SCHEMA_VERSION
from depthlens.causal import SkipOptions, skip_sweep
from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_plan, save_pruned
from depthlens.errors import DepthlensError
from depthlens.evaluate.compare import compare
from depthlens.models.manifest import MANIFEST, read_manifest
from depthlens.profiling import Profile, ProfileOptions, profile
from depthlens.results import ENVELOPE_KEYS, check_same_model, model_fingerprint, read_result

EAGER = ProfileOptions(lens_kernel="eager", batch_size=2)


def _strict(path: Path) -> dict[str, Any]:
    """Parse as strict JSON: NaN / Infinity are refused."""

    def refuse(tok: str) -> Any:
        raise AssertionError(f"non-JSON constant {tok} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_result_has_the_same_header(tmp_path: Path) -> None:
    lm, w = wrap_tiny("llama"), random_windows(n=4, seq_len=12)
    fp = lm.identity()["fingerprint"]
    prof = profile(lm, w, EAGER, progress=False)
    skip = skip_sweep(lm, w, SkipOptions(lens_kernel="eager"), progress=False)
    plan = plan_cut(lm, random_windows(n=20, seq_len=16), "replaceme-ls", CutOptions(n=1))
    prof.save(tmp_path / "profile.json")
    skip.save(tmp_path / "skip.json")
    save_plan(plan, tmp_path / "plan.json")
    cut = wrap_tiny("llama")
    apply_cut_(cut, plan)
    save_pruned(cut, plan, tmp_path / "pruned")
    res = compare([("orig", lm), ("cut", cut)], w, speed=False, batch_size=2)
    res.save(tmp_path / "compare.json")
    kinds = {
        "profile.json": ("profile", fp),
        "skip.json": ("skip", fp),
        "plan.json": ("cut_plan", fp),
        f"pruned/{MANIFEST}": ("pruned", None),
        "compare.json": ("compare", fp),
    }
    for name, (kind, want_fp) in kinds.items():
        d = _strict(tmp_path / name)
        assert ENVELOPE_KEYS <= set(d), (name, ENVELOPE_KEYS - set(d))
        assert d["kind"] == f"depthlens.{kind}" and d["schema_version"] == SCHEMA_VERSION
        env, payload = read_result(tmp_path / name, kind)
        assert not ENVELOPE_KEYS & set(payload)
        assert env.model["fingerprint"] == model_fingerprint(env.model)
        if want_fp is not None:
            assert env.fingerprint == want_fp, name
        assert env.data and env.tokens and env.created
    man = read_manifest(tmp_path / "pruned")
    assert man is not None and man["base_model"]["fingerprint"] == fp
    assert man["model"]["fingerprint"] != fp and man["model"]["num_layers"] == 3
    assert man["removed"] == list(plan.removed)
    back = Profile.load(tmp_path / "profile.json")
    assert back.envelope == prof.envelope and back.metrics == prof.metrics


def test_nan_is_written_as_null(tmp_path: Path) -> None:
    lm, w = wrap_tiny("llama"), random_windows(n=2, seq_len=8)
    prof = profile(lm, w, EAGER, progress=False)
    metrics = {**prof.metrics, "lens_kl": [math.nan, math.inf, 1.0, None]}
    import dataclasses

    dataclasses.replace(prof, metrics=metrics).save(tmp_path / "p.json")
    assert _strict(tmp_path / "p.json")["metrics"]["lens_kl"] == [None, None, 1.0, None]


def test_schema_1_profile_reads_and_newer_is_refused(tmp_path: Path) -> None:
    lm, w = wrap_tiny("llama"), random_windows(n=2, seq_len=8)
    d = profile(lm, w, EAGER, progress=False).to_dict()
    d["schema_version"] = 1  # schema 1 had the same flat layout for profiles
    del d["model"]["fingerprint"]  # and no fingerprint
    (tmp_path / "old.json").write_text(json.dumps(d))
    old = Profile.load(tmp_path / "old.json")
    assert old.envelope.schema_version == 1 and old.n_layers == lm.num_layers
    assert old.envelope.fingerprint == lm.identity()["fingerprint"]  # recomputed
    d["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "new.json").write_text(json.dumps(d))
    with pytest.raises(DepthlensError, match="newer"):
        Profile.load(tmp_path / "new.json")
    del d["metrics"]
    d["schema_version"] = SCHEMA_VERSION
    (tmp_path / "cut.json").write_text(json.dumps(d))
    with pytest.raises(DepthlensError, match="lacks metrics"):
        Profile.load(tmp_path / "cut.json")
    with pytest.raises(DepthlensError, match="kind"):
        read_result(tmp_path / "old.json", "skip")


def test_profile_with_results_of_another_model_is_refused() -> None:
    lm, w = wrap_tiny("llama"), random_windows(n=2, seq_len=10)
    prof = profile(lm, w, EAGER, progress=False)
    other = wrap_tiny("qwen2")
    skip = skip_sweep(other, w, SkipOptions(lens_kernel="eager", sublayers=()), progress=False)
    with pytest.raises(DepthlensError, match="different models"):
        prof.with_extra("causal", skip)
    with pytest.raises(DepthlensError, match="different models"):
        check_same_model(lm.identity(), other.identity(), "these")
    same = skip_sweep(lm, w, SkipOptions(lens_kernel="eager", sublayers=()), progress=False)
    assert prof.with_extra("causal", same).extra["causal"]["kind"] == "depthlens.skip"
