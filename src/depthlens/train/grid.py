"""Training the runs of a depth study: where each lives, in this process or in workers.

A diverged run (loss NaN/inf) is recorded, not raised: it is a result of the study.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from depthlens.train.config import TrainConfig
from depthlens.train.loop import NonFiniteLossError
from depthlens.train.run import RESULT, train


def run_dir(out: Path, cfg: TrainConfig) -> Path:
    """Where the run of (scheme, depth, seed) lives inside the study folder."""
    return out / "runs" / f"{cfg.scheme}-L{cfg.depth}-s{cfg.seed}"


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


def train_all(
    todo: list[TrainConfig],
    out: Path,
    tdir: Path,
    tok: Any,
    jobs: int,
    device: str | None,
    progress: bool,
) -> dict[tuple[str, int, int], str]:
    """Train the runs in ``todo``: in this process, or ``jobs`` CPU worker processes.

    Returns the runs whose loss became NaN/inf (scheme, depth, seed) → message: a
    diverged run is a result of the study, not a reason to stop it.
    """
    failed: dict[tuple[str, int, int], str] = {}

    def say(msg: str) -> None:
        if progress:
            print(f"study: {msg}", file=sys.stderr, flush=True)

    if jobs <= 1 or len(todo) <= 1:
        for i, cfg in enumerate(todo):
            say(f"training {label(cfg)} ({i + 1}/{len(todo)})")
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
                failed[run_key(cfg)] = str(exc)
                say(f"{label(cfg)} diverged: {exc}")
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
                say(f"trained {label(c)} ({i + 1}/{len(todo)})")
            except NonFiniteLossError as exc:
                failed[run_key(c)] = str(exc)
                say(f"{label(c)} diverged: {exc}")
    return failed


def run_key(cfg: TrainConfig) -> tuple[str, int, int]:
    """(scheme, depth, seed): one run of the grid."""
    return (cfg.scheme, cfg.depth, cfg.seed)


def label(cfg: TrainConfig) -> str:
    """'lns L=8 seed 1' for progress lines."""
    return f"{cfg.scheme} L={cfg.depth} seed {cfg.seed}"
