"""``depthlens study depth``: train every (scheme, depth) alike, then measure how each uses depth.

Every run sees the same tokenizer, the same training tokens in the same order and the
same budget. Each trained model is then measured with depthlens's own tools on the same
held-out windows: the one-pass profile (relative contribution per block, residual RMS per
layer = the variance growth of Sun et al. 2025 Fig. 4, angular distance to the next
block, logit-lens KL) and the removal cost ΔP(ℓ) = held-out loss with block ℓ deleted
minus the full model's loss. "Unused depth" is the share of blocks with ΔP(ℓ) < 1% of
the loss.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.train.config import TrainConfig
from depthlens.train.grid import run_dir, run_key, train_all
from depthlens.train.measure import UNUSED_THRESHOLD, measure
from depthlens.train.result import StudyResult, TrainResult
from depthlens.train.run import RESULT, pick_device
from depthlens.train.schemes import SCHEMES, parse_schemes


@dataclass(frozen=True)
class StudyConfig:
    """The grid and the shared training/measurement settings."""

    depths: tuple[int, ...] = (4, 8, 16)
    # The paper's comparison; the other four schemes are one --schemes away.
    schemes: tuple[str, ...] = ("pre-ln", "lns")
    # Three seeds per (scheme, depth): every figure is a mean with a 95% interval. The
    # token budget below is sized so that the default grid (18 runs) fits 25 minutes on
    # two CPU cores (docs/TRAIN.md, "Cost").
    seeds: tuple[int, ...] = (0, 1, 2)
    base: TrainConfig = TrainConfig(
        width=64,
        heads=4,
        context=64,
        tokens=204_800,
        batch_size=16,
        lr=3e-3,
        warmup=20,
        vocab_size=2048,
    )
    measure_tokens: int = 4096

    def validate(self) -> None:
        """Check every run's config before any work."""
        if not self.depths:
            raise DepthlensError("--depths is empty; pass e.g. 4,8,16")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise DepthlensError(f"--seeds needs distinct seeds, got {list(self.seeds)}")
        for s in self.schemes:
            parse_schemes(s)
        for cfg in self.runs():
            cfg.validate()
        if self.measure_tokens < self.base.context:
            raise DepthlensError(
                f"--measure-tokens {self.measure_tokens} is smaller than one "
                f"--context {self.base.context} window"
            )

    def runs(self) -> list[TrainConfig]:
        """One config per (scheme, depth, seed), schemes outer, seeds inner."""
        return [
            dataclasses.replace(self.base, scheme=s, depth=d, seed=seed)
            for s in self.schemes
            for d in self.depths
            for seed in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "depths": list(self.depths),
            "schemes": list(self.schemes),
            "seeds": list(self.seeds),
            "base": self.base.to_dict(),
            "measure_tokens": self.measure_tokens,
            "unused_threshold": UNUSED_THRESHOLD,
            "interval": "mean ± t_{0.975,n-1}·s/√n over seeds; a difference is called "
            "only when the two intervals do not overlap",
        }


# The GPU configuration of docs/TRAIN.md: 12 and 24 blocks, width 256, 50M tokens a run.
PAPER_PRESET = StudyConfig(
    depths=(12, 24),
    schemes=("pre-ln", "lns"),
    seeds=(0, 1, 2),
    base=TrainConfig(
        width=256,
        heads=8,
        context=256,
        tokens=50_331_648,
        batch_size=64,
        lr=1e-3,
        warmup=300,
        vocab_size=8192,
    ),
    measure_tokens=65_536,
)


def seeds_arg(text: str) -> tuple[int, ...]:
    """``3`` → seeds (0, 1, 2); ``0,5,7`` → those seeds."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise DepthlensError(f"--seeds takes a count (3) or a list (0,1,2), got {text!r}") from exc
    if "," in text:
        return tuple(vals)
    if len(vals) != 1 or vals[0] < 1:
        raise DepthlensError(f"--seeds needs at least 1 seed, got {text!r}")
    return tuple(range(vals[0]))


def parse_depths(text: str) -> tuple[int, ...]:
    """``4,8,16`` → (4, 8, 16), each ≥ 1."""
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise DepthlensError(
            f"--depths must be integers separated by commas, got {text!r}"
        ) from exc
    if not vals or min(vals) < 1:
        raise DepthlensError(f"--depths needs depths ≥ 1, got {text!r}; pass e.g. 4,8,16")
    twice = sorted({d for d in vals if vals.count(d) > 1})
    if twice:
        raise DepthlensError(
            f"--depths {text!r} names depth {', '.join(map(str, twice))} more than once; "
            "each depth is one run, so list each once"
        )
    return vals


def _finished_same(d: Path, cfg: TrainConfig) -> bool:
    if not (d / RESULT).is_file():
        return False
    try:
        return TrainResult.load(d / RESULT).options == cfg.to_dict()
    except DepthlensError:  # unreadable or of another kind: train it again
        return False


def _measured_row(
    cfg: TrainConfig, out: Path, measure_tokens: int, failed: dict[Any, str]
) -> dict[str, Any]:
    """One row of ``runs``: the trained run's record and its measurements (or divergence)."""
    d = run_dir(out, cfg)
    head = {"scheme": cfg.scheme, "depth": cfg.depth, "seed": cfg.seed}
    head["run"] = str(d.relative_to(out))
    if run_key(cfg) in failed:
        return {**head, "diverged": failed[run_key(cfg)], "eval_loss": None, "unused_depth": None}
    trained = TrainResult.load(d / RESULT)
    row = {
        **head,
        "train_loss_last": _tail_mean(trained.losses),
        "saved_as": trained.saved_as,
        "train_seconds": trained.seconds,
        "train_cpu_seconds": trained.cpu_seconds,
    }
    w0, c0 = time.perf_counter(), time.process_time()
    row.update(measure(d, cfg, measure_tokens))
    row.update(
        measure_seconds=time.perf_counter() - w0, measure_cpu_seconds=time.process_time() - c0
    )
    return row


def _measure_one(
    cfg: TrainConfig, out: Path, measure_tokens: int, failed: dict[Any, str], threads: int
) -> dict[str, Any]:
    """:func:`_measured_row` in a worker process on ``threads`` CPU threads."""
    import torch

    torch.set_num_threads(threads)
    return _measured_row(cfg, out, measure_tokens, failed)


def _measure_all(
    study: StudyConfig, out: Path, failed: dict[Any, str], jobs: int
) -> list[dict[str, Any]]:
    """Every run's row, in grid order; ``jobs`` > 1 measures in CPU worker processes."""
    cfgs = study.runs()
    if jobs <= 1 or len(cfgs) <= 1:
        return [_measured_row(c, out, study.measure_tokens, failed) for c in cfgs]
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futs = [
            pool.submit(_measure_one, c, out, study.measure_tokens, failed, threads) for c in cfgs
        ]
        return [f.result() for f in futs]


def run_study(
    study: StudyConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> StudyResult:
    """Train and measure every (scheme, depth, seed); write ``study.json`` and ``report.html``.

    ``jobs`` > 1 trains that many runs at once in CPU worker processes (each run is
    deterministic on its own, so the results do not depend on ``jobs``). The payload's
    ``summary`` holds every figure as mean ± 95% interval over seeds, ``differences``
    the first scheme against each other one per depth (significant = intervals separate).
    """
    from depthlens.train.guard import (
        check_device,
        check_output_folder,
        load_disjoint,
        removed_on_failure,
    )

    study.validate()
    out = Path(out)
    if (out / "study.json").exists() and not overwrite:
        raise DepthlensError(f"{out} holds a finished study; pass --overwrite or another -o")
    check_device(device)
    check_output_folder(out)
    base = study.base
    source = load_disjoint(base.data, base.eval_data, base.text_field)
    with removed_on_failure(out, lambda: any((out / "runs").glob(f"*/{RESULT}"))):
        return _run_grid(study, out, source, overwrite, device=device, progress=progress, jobs=jobs)


def _run_grid(
    study: StudyConfig,
    out: Path,
    source: Any,
    overwrite: bool,
    *,
    device: str | None,
    progress: bool,
    jobs: int,
) -> StudyResult:
    """Train what is not finished yet, measure every run, write the study and its page."""
    from depthlens.io import follow_umask_
    from depthlens.results import Envelope
    from depthlens.train.report import write_study_report

    (out / "runs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tdir, tok = _tokenizer(study, out, source)
    if pick_device(device).type != "cpu":
        jobs = 1  # worker processes are for CPU cores; one GPU run at a time
    todo = [c for c in study.runs() if not _finished_same(run_dir(out, c), c)]
    if overwrite:  # runs left half-done by another grid start again instead of refusing
        for c in todo:
            shutil.rmtree(run_dir(out, c), ignore_errors=True)
    failed = train_all(todo, out, tdir, tok, jobs, device, progress)
    rows = _measure_all(study, out, failed, jobs)
    env = Envelope(
        kind=StudyResult.KIND,
        model={"ref": "depthlens train (lab models)"},
        data=source.to_dict(),
        options=study.to_dict(),
        tokens={"trained_per_run": study.base.steps * study.base.tokens_per_step},
    )
    result = StudyResult(
        envelope=env,
        runs=rows,
        schemes={s: SCHEMES[s].to_dict() for s in study.schemes},
        seconds=time.perf_counter() - t0,
        **_over_seeds(study, rows),
    )
    result.save(out / "study.json")
    write_study_report(out / "study.json", out / "report.html")
    follow_umask_(out)  # the runs' and the tokenizer's files, whoever wrote them
    return result


def _tokenizer(study: StudyConfig, out: Path, source: Any) -> tuple[Path, Any]:
    """Train the study's tokenizer once (a resumed study reuses it): (its folder, it)."""
    from depthlens.train.tokenizer import load_tokenizer, train_tokenizer

    tdir = out / "tokenizer"
    if not (tdir / "tokenizer.json").is_file():
        train_tokenizer(source.docs, study.base.vocab_size).save_pretrained(tdir)
    return tdir, load_tokenizer(tdir)


def _over_seeds(study: StudyConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary`` (mean ± 95% interval per scheme and depth) and ``differences``.

    The differences compare the first scheme against each other one per depth
    (significant = the intervals separate).
    """
    from depthlens.train.seeds import differences, summarise

    summary = summarise(rows)
    first = study.schemes[0]
    return {
        "summary": summary,
        "differences": [
            {"a": first, "b": b, "rows": differences(summary, first, b)} for b in study.schemes[1:]
        ],
    }


def _tail_mean(losses: list[float], frac: float = 0.1) -> float | None:
    """Mean of the last 10% of the training losses (less noisy than the last one)."""
    if not losses:
        return None
    k = max(1, int(len(losses) * frac))
    return sum(losses[-k:]) / k
