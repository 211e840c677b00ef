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

import copy
import dataclasses
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.metrics.catalog.lens import LENS_KL
from depthlens.metrics.catalog.residual import REL_CONTRIB_BLOCK, RESID_NORM, RESID_RMS_GROWTH
from depthlens.train.config import TrainConfig
from depthlens.train.loop import NonFiniteLossError
from depthlens.train.result import StudyResult, TrainResult
from depthlens.train.run import RESULT, pick_device, train
from depthlens.train.schemes import SCHEMES, parse_schemes

UNUSED_THRESHOLD = 0.01  # a block is "unused" when deleting it costs < 1% of the loss


@dataclass(frozen=True)
class StudyConfig:
    """The grid and the shared training/measurement settings."""

    depths: tuple[int, ...] = (4, 8, 16)
    # The paper's comparison; the other four schemes are one --schemes away (each adds
    # ~7 min of CPU time at this size).
    schemes: tuple[str, ...] = ("pre-ln", "lns")
    base: TrainConfig = TrainConfig(
        width=64,
        heads=4,
        context=64,
        tokens=614_400,
        batch_size=16,
        lr=3e-3,
        warmup=30,
        vocab_size=2048,
    )
    measure_tokens: int = 8192

    def validate(self) -> None:
        """Check every run's config before any work."""
        if not self.depths:
            raise DepthlensError("--depths is empty; pass e.g. 4,8,16")
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
        """One config per (scheme, depth), schemes outer."""
        return [
            dataclasses.replace(self.base, scheme=s, depth=d)
            for s in self.schemes
            for d in self.depths
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "depths": list(self.depths),
            "schemes": list(self.schemes),
            "base": self.base.to_dict(),
            "measure_tokens": self.measure_tokens,
            "unused_threshold": UNUSED_THRESHOLD,
        }


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


def run_dir(out: Path, cfg: TrainConfig) -> Path:
    """Where the run of (scheme, depth) lives inside the study folder."""
    return out / "runs" / f"{cfg.scheme}-L{cfg.depth}"


def _finished_same(d: Path, cfg: TrainConfig) -> bool:
    if not (d / RESULT).is_file():
        return False
    try:
        return TrainResult.load(d / RESULT).options == cfg.to_dict()
    except DepthlensError:  # unreadable or of another kind: train it again
        return False


def removal_costs(lm: Any, windows: Any, base_nll: float, batch_size: int) -> list[float | None]:
    """ΔP(ℓ): held-out loss with block ℓ deleted (on a copy) minus the full model's."""
    from depthlens.cut.apply import remove_blocks_
    from depthlens.evaluate.perplexity import evaluate_perplexity

    if lm.num_layers < 2:
        return [None] * lm.num_layers
    costs: list[float | None] = []
    for ell in range(lm.num_layers):
        cut = dataclasses.replace(lm, model=copy.deepcopy(lm.model))
        remove_blocks_(cut, (ell,))
        costs.append(evaluate_perplexity(cut, windows, batch_size=batch_size)["nll"] - base_nll)
    return costs


def measure(path: Path, cfg: TrainConfig, measure_tokens: int) -> dict[str, Any]:
    """Profile and removal costs of the trained model in ``path`` on the held-out text."""
    from depthlens.data import load_text, make_windows
    from depthlens.evaluate.perplexity import evaluate_perplexity
    from depthlens.models.loading import load_model
    from depthlens.profiling import ProfileOptions, profile

    lm = load_model(str(path))
    windows = make_windows(
        load_text(cfg.eval_data, text_field=cfg.text_field),
        lm.tokenizer,
        seq_len=cfg.context,
        max_tokens=measure_tokens,
        seed=cfg.seed,
    )
    opts = ProfileOptions(batch_size=cfg.batch_size, seed=cfg.seed, lens_kernel="eager", n_max=1)
    prof = profile(lm, windows, opts, progress=False)
    base = evaluate_perplexity(lm, windows, batch_size=cfg.batch_size)["nll"]
    costs = removal_costs(lm, windows, base, cfg.batch_size)
    norms = prof.metrics.get(RESID_NORM.name, [])
    rms = [None if v is None else v / math.sqrt(cfg.width) for v in norms]
    rel = [None if c is None else c / base for c in costs]
    unused = [r < UNUSED_THRESHOLD for r in rel if r is not None]
    return {
        "eval_loss": base,
        REL_CONTRIB_BLOCK.name: prof.metrics.get(REL_CONTRIB_BLOCK.name),
        "resid_rms": rms,
        RESID_RMS_GROWTH.name: prof.metrics.get(RESID_RMS_GROWTH.name),
        "angular_distance_next": [row[0] if row else None for row in prof.angular_distance],
        LENS_KL.name: prof.metrics.get(LENS_KL.name),
        "removal_cost": costs,
        "removal_cost_rel": rel,
        "unused_depth": (sum(unused) / len(unused)) if unused else None,
        "windows": windows.to_dict(),
    }


def _train_one(cfg: TrainConfig, d: Path, tdir: Path, threads: int) -> None:
    """One run in a worker process (``--jobs`` > 1), on ``threads`` CPU threads."""
    import torch

    from depthlens.train.tokenizer import load_tokenizer

    torch.set_num_threads(threads)
    train(
        cfg,
        d,
        overwrite=(d / RESULT).is_file(),
        tokenizer=load_tokenizer(tdir),
        device="cpu",
        progress=False,
    )


def _train_all(
    todo: list[TrainConfig],
    out: Path,
    tdir: Path,
    tok: Any,
    jobs: int,
    device: str | None,
    progress: bool,
) -> dict[tuple[str, int], str]:
    """Train the runs in ``todo``: in this process, or ``jobs`` CPU worker processes.

    Returns the runs whose loss became NaN/inf (scheme, depth) → message: a diverged run
    is a result of the study, not a reason to stop it.
    """
    failed: dict[tuple[str, int], str] = {}

    def say(msg: str) -> None:
        if progress:
            print(f"study: {msg}", file=sys.stderr, flush=True)

    if jobs <= 1 or len(todo) <= 1:
        for i, cfg in enumerate(todo):
            say(f"training {cfg.scheme} L={cfg.depth} ({i + 1}/{len(todo)})")
            try:
                train(
                    cfg,
                    run_dir(out, cfg),
                    overwrite=(run_dir(out, cfg) / RESULT).is_file(),
                    tokenizer=tok,
                    device=device,
                    progress=progress,
                )
            except NonFiniteLossError as exc:
                failed[(cfg.scheme, cfg.depth)] = str(exc)
                say(f"{cfg.scheme} L={cfg.depth} diverged: {exc}")
        return failed
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # Deepest runs first, so the slowest ones do not start last.
    order = sorted(todo, key=lambda c: -c.depth)
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_train_one, c, run_dir(out, c), tdir, threads): c for c in order}
        for i, f in enumerate(as_completed(futs)):
            c = futs[f]
            try:
                f.result()
                say(f"trained {c.scheme} L={c.depth} ({i + 1}/{len(todo)})")
            except NonFiniteLossError as exc:
                failed[(c.scheme, c.depth)] = str(exc)
                say(f"{c.scheme} L={c.depth} diverged: {exc}")
    return failed


def run_study(
    study: StudyConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> StudyResult:
    """Train and measure every (scheme, depth); write ``study.json`` and ``report.html``.

    ``jobs`` > 1 trains that many runs at once in CPU worker processes (each run is
    deterministic on its own, so the results do not depend on ``jobs``).
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
    from depthlens.train.tokenizer import load_tokenizer, train_tokenizer

    (out / "runs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tdir = out / "tokenizer"
    if not (tdir / "tokenizer.json").is_file():
        train_tokenizer(source.docs, study.base.vocab_size).save_pretrained(tdir)
    tok = load_tokenizer(tdir)
    if pick_device(device).type != "cpu":
        jobs = 1  # worker processes are for CPU cores; one GPU run at a time
    todo = [c for c in study.runs() if not _finished_same(run_dir(out, c), c)]
    if overwrite:  # runs left half-done by another grid start again instead of refusing
        for c in todo:
            shutil.rmtree(run_dir(out, c), ignore_errors=True)
    failed = _train_all(todo, out, tdir, tok, jobs, device, progress)
    rows = [_study_row(out, cfg, failed, study.measure_tokens) for cfg in study.runs()]
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
    )
    result.save(out / "study.json")
    write_study_report(out / "study.json", out / "report.html")
    follow_umask_(out)  # the runs' and the tokenizer's files, whoever wrote them
    return result


def _study_row(
    out: Path, cfg: TrainConfig, failed: dict[tuple[str, int], str], measure_tokens: int
) -> dict[str, Any]:
    """One row of the study: the run's training numbers and what was measured on it."""
    d = run_dir(out, cfg)
    row: dict[str, Any] = {"scheme": cfg.scheme, "depth": cfg.depth, "run": str(d.relative_to(out))}
    if (cfg.scheme, cfg.depth) in failed:
        return {
            **row,
            "diverged": failed[(cfg.scheme, cfg.depth)],
            "eval_loss": None,
            "unused_depth": None,
        }
    trained = TrainResult.load(d / RESULT)
    row.update(
        train_loss_last=_tail_mean(trained.losses),
        saved_as=trained.saved_as,
        train_seconds=trained.seconds,
        train_cpu_seconds=trained.cpu_seconds,
    )
    w0, c0 = time.perf_counter(), time.process_time()
    row.update(measure(d, cfg, measure_tokens))
    row.update(
        measure_seconds=time.perf_counter() - w0, measure_cpu_seconds=time.process_time() - c0
    )
    return row


def _tail_mean(losses: list[float], frac: float = 0.1) -> float | None:
    """Mean of the last 10% of the training losses (less noisy than the last one)."""
    if not losses:
        return None
    k = max(1, int(len(losses) * frac))
    return sum(losses[-k:]) / k
