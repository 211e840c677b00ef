"""Data parallel: 2 CPU processes (gloo) give the same profile as 1 process.

The workers run the Python API under a real ``torch.distributed`` group, exactly as
``torchrun -m depthlens profile`` does after :func:`depthlens.dist.init_process_group`:
each rank takes every second window, the float64 sums are all-reduced, rank 0 writes.
Real processes make these e2e; test_ranks_in_process.py is their fast in-process twin.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from depthlens.profiling import ProfileOptions, profile
from depthlens.profiling.result import Profile

sys.path.insert(0, str(Path(__file__).parents[1]))  # spawned workers import the test helpers

REL = 1e-9
# batch_size=1: every forward and every lens chunk sees the same rows in both runs, so the
# float32 per-token values are bit-identical and only the float64 summation order (and the
# all-reduce) differs: 1e-9 relative holds for every metric.
EXACT = ProfileOptions(batch_size=1, lens_kernel="eager", lens_tokens=40)
# batch_size=2: ranks batch different windows together. The forward is row-independent
# (residual metrics stay within 1e-9), but the logit lens evaluates KL in float32 over
# chunks of the batch's tokens, and KL ~ 3e-3 is a difference of O(1) log-probabilities:
# a different chunk shape moves it by ~1e-7 relative (it does so in ONE process too when
# only --batch-size changes). Those two metrics get the tightest honest tolerance.
BATCHED = ProfileOptions(batch_size=2, lens_kernel="eager", lens_tokens=40)
LENS_KL_REL = 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from conftest import random_windows, wrap_tiny

    from depthlens import dist as dl_dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    with dl_dist.process_group("gloo") as (r, w):
        assert (r, w) == (rank, world)
        for tag, opts in (("exact", EXACT), ("batched", BATCHED)):
            prof = profile(wrap_tiny("llama"), random_windows(n=7), opts, progress=False)
            if dl_dist.is_main_rank():
                prof.save(f"{out}.{tag}.json")
        cut = _calibrate(wrap_tiny("llama"), random_windows(n=7))
        if dl_dist.is_main_rank():
            torch.save(cut, f"{out}.cut.pt")


def _calibrate(lm: Any, windows: Any) -> dict[str, Any]:
    """The cut's calibration (ReplaceMe sums over a span) and a whole replaceme-ls plan."""
    from depthlens.cut import CalibrationOptions, CutOptions, plan_cut
    from depthlens.cut.calibrate import stream_span_sums

    cal = CalibrationOptions(batch_size=1)
    sums, _ = stream_span_sums(lm, windows, 1, 2, cal)
    plan = plan_cut(lm, windows, "replaceme-ls", CutOptions(n=1, calibration=cal))
    return {"sums": sums.state_dict(), "removed": plan.removed, "T": plan.transform}


def _close(a: Any, b: Any, path: str = "", rel: float = REL) -> None:
    """Recursive equality with relative tolerance ``rel`` on floats."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}", rel)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def cheapest_span(prof: Profile, n: int) -> int:
    """Start s >= 1 of the contiguous n-block span with the smallest angular distance."""
    cands = [
        (row[n - 1], s)
        for s, row in enumerate(prof.angular_distance)
        if s >= 1 and row[n - 1] is not None
    ]
    return min(cands)[1]


@pytest.fixture(scope="module")
def two_rank(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Profile]:
    out = tmp_path_factory.mktemp("dist") / "p"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    got: dict[str, Any] = {t: Profile.load(f"{out}.{t}.json") for t in ("exact", "batched")}
    got["cut"] = torch.load(f"{out}.cut.pt")
    return got


def _single(opts: ProfileOptions | None) -> Any:
    """The same computation in this process (``opts`` None: the cut's calibration)."""
    from conftest import random_windows, wrap_tiny

    assert not dist.is_initialized()
    # Same thread count as the workers: float32 reductions over the vocabulary split by
    # thread, so 1 vs 2 threads alone moves lens KL by ~1e-6 relative.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if opts is None:
            return _calibrate(wrap_tiny("llama"), random_windows(n=7))
        return profile(wrap_tiny("llama"), random_windows(n=7), opts, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.e2e  # 2 real processes (mp.spawn)
def test_two_ranks_equal_one_process(two_rank: dict[str, Any]) -> None:
    single, two = _single(EXACT), two_rank["exact"]
    assert two.tokens == single.tokens  # every token counted once, none twice
    assert single.tokens["residual"] == 7 * 15
    _close(single.metrics, two.metrics, "metrics")
    _close(single.angular_distance, two.angular_distance, "angular_distance")
    _close(single.prediction_depth, two.prediction_depth, "prediction_depth")
    _close(single.summary, two.summary, "summary")
    for n in (1, 2):
        assert cheapest_span(two, n) == cheapest_span(single, n)


@pytest.mark.e2e  # 2 real processes (mp.spawn)
def test_two_ranks_batched(two_rank: dict[str, Any]) -> None:
    single, two = _single(BATCHED), two_rank["batched"]
    assert two.tokens == single.tokens
    loose = {"lens_kl", "lens_kl_rev"}
    for name, values in single.metrics.items():
        rel = LENS_KL_REL if name in loose else REL
        _close(values, two.metrics[name], f"metrics.{name}", rel)
    _close(single.angular_distance, two.angular_distance, "angular_distance")
    for n in (1, 2):
        assert cheapest_span(two, n) == cheapest_span(single, n)


def test_rank_world_without_group() -> None:
    from depthlens import dist as dl_dist

    assert dl_dist.rank_world() == (0, 1)
    assert dl_dist.is_main_rank()
    assert dl_dist.init_process_group() is False  # WORLD_SIZE unset: nothing to join


def test_bad_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from depthlens import dist as dl_dist
    from depthlens.errors import DepthlensError

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DepthlensError, match="WORLD_SIZE must be an integer"):
        dl_dist.init_process_group()


@pytest.mark.e2e  # 2 real processes (mp.spawn)
def test_profile_json_roundtrip_is_exact(two_rank: dict[str, Any], tmp_path: Path) -> None:
    # The comparison above reads JSON; make sure JSON keeps every bit of a float64.
    p = tmp_path / "again.json"
    two_rank["exact"].save(p)
    assert json.loads(p.read_text())["metrics"] == two_rank["exact"].metrics


@pytest.mark.e2e  # torchrun starts 2 real processes
def test_torchrun_cli_equals_plain_cli(tmp_path: Path) -> None:
    """The real entry point: ``torchrun --nproc-per-node 2 -m depthlens profile …``."""
    import subprocess

    from fixtures_saved import save_tiny, write_text

    model, text = save_tiny(tmp_path / "m"), write_text(tmp_path / "t.txt", 1500)
    common = [
        "-m", "depthlens", "profile", str(model), "--data", str(text), "--seq-len", "16",
        "--max-tokens", "160", "--batch-size", "1", "--lens-kernel", "eager", "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    outs = {"two": tmp_path / "two.json", "one": tmp_path / "one.json"}
    for argv in ([*run, *common, "-o", str(outs["two"])], [*common, "-o", str(outs["one"])]):
        proc = subprocess.run(
            [sys.executable, *argv], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = (json.loads(p.read_text()) for p in (outs["one"], outs["two"]))
    for doc in (one, two):
        doc.pop("created")
    _close(one, two)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "one.json", "t.txt", "two.json"]


@pytest.mark.e2e  # 2 real processes (mp.spawn)
def test_two_ranks_same_calibration_and_cut(two_rank: dict[str, Any]) -> None:
    single, two = _single(None), two_rank["cut"]
    assert two["removed"] == single["removed"]  # the same chosen cut
    assert set(two["sums"]) == set(single["sums"])
    for name, ref in single["sums"].items():  # A = Σ MᵀM, B = Σ MᵀZ, ...: float64 sums
        scale = float(ref.abs().max()) or 1.0
        err = float((two["sums"][name] - ref).abs().max()) / scale
        assert err <= REL, (name, err)
    # T solves (A + αI) T = B: the ~1e-16 differences of the sums, times cond(A)
    t1, t2 = single["T"].double(), two["T"].double()
    assert float((t1 - t2).abs().max()) / float(t1.abs().max()) <= 1e-6
