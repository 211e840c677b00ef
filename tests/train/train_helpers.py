"""Shared bits of the train tests: a small local text and the tiny-run arguments."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the cat sat on the mat while a dog ran in the park and birds sang over quiet "
    "hills near the old river where children played games every summer day"
).split()


def write_text(path: Path, n_docs: int = 30, seed: int = 0) -> Path:
    """A small deterministic English-like text, one document per line."""
    import random

    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(60)) + "." for _ in range(n_docs)]
    path.write_text("\n".join(lines) + "\n")
    return path


def eval_text(text: Path) -> Path:
    """A held-out text beside ``text`` (other documents: train refuses overlapping data)."""
    held = text.with_name(f"{text.stem}-eval{text.suffix}")
    if not held.is_file():
        write_text(held, n_docs=10, seed=1000)
    return held


def tiny_args(text: Path, out: Path, steps: int = 8, **over: object) -> list[str]:
    """``depthlens train`` arguments of a tiny run (depth 2, width 16, vocab 300)."""
    opts: dict[str, object] = {
        "--depth": 2,
        "--width": 16,
        "--heads": 2,
        "--context": 16,
        "--batch-size": 4,
        "--tokens": 4 * 16 * steps,
        "--vocab-size": 300,
        "--warmup": 2,
        "--lr": 1e-2,
        "--data": text,
        "--eval-data": eval_text(text),
        "--device": "cpu",
    }
    opts.update({k: v for k, v in over.items()})
    args = ["train"]
    for k, v in opts.items():
        args += [k, str(v)]
    return [*args, "-o", str(out), "--quiet"]
