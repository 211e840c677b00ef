"""What a training run is: one frozen config, validated before any work is done."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from depthlens.errors import DepthlensError
from depthlens.train.schemes import DEFAULT_SCHEME, get_scheme


@dataclass(frozen=True)
class TrainConfig:
    """Model shape, scheme, data, budget and optimiser of one run."""

    depth: int = 4
    width: int = 128
    heads: int = 4
    context: int = 128
    scheme: str = DEFAULT_SCHEME
    drop_path: float = 0.0
    mlp_ratio: int = 4
    vocab_size: int = 4096
    data: str = "wiki-calib"
    eval_data: str = "wiki-eval"
    text_field: str = "text"
    tokens: int = 2_000_000  # training budget: steps × batch_size × context
    eval_tokens: int = 16384
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50  # steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    batch_size: int = 32  # sequences per optimiser step, over all processes
    seed: int = 0

    @property
    def tokens_per_step(self) -> int:
        """Trained tokens per optimiser step."""
        return self.batch_size * self.context

    @property
    def steps(self) -> int:
        """Optimiser steps the budget pays for."""
        return self.tokens // self.tokens_per_step

    def validate(self, world: int = 1) -> None:
        """Refuse a configuration that cannot train, with the value and the fix."""
        get_scheme(self.scheme)
        ints = {
            "--depth": self.depth,
            "--width": self.width,
            "--heads": self.heads,
            "--batch-size": self.batch_size,
        }
        for opt, v in ints.items():
            if v < 1:
                raise DepthlensError(f"{opt} must be at least 1, got {v}")
        if self.width % self.heads:
            raise DepthlensError(
                f"--width {self.width} is not divisible by --heads {self.heads}; "
                f"pick a width that is a multiple of the heads (e.g. {self.heads * 32})"
            )
        if (self.width // self.heads) % 2:
            raise DepthlensError(
                f"the head size --width/--heads = {self.width // self.heads} is odd; RoPE "
                "needs an even head size"
            )
        from depthlens.train.tokenizer import MIN_VOCAB

        if self.vocab_size < MIN_VOCAB:
            raise DepthlensError(
                f"--vocab-size {self.vocab_size} is below {MIN_VOCAB} (256 bytes + EOS); raise it"
            )
        if self.context < 2:
            raise DepthlensError(f"--context must be at least 2, got {self.context}")
        if self.tokens < self.tokens_per_step:
            raise DepthlensError(
                f"--tokens {self.tokens} is smaller than one batch (--batch-size "
                f"{self.batch_size} × --context {self.context} = {self.tokens_per_step}); "
                "raise --tokens or lower --batch-size"
            )
        if not 0.0 <= self.drop_path < 1.0:
            raise DepthlensError(f"--drop-path must be in [0, 1), got {self.drop_path}")
        if not self.lr > 0:
            raise DepthlensError(f"--lr must be positive, got {self.lr}")
        if self.warmup < 0:
            raise DepthlensError(f"--warmup must be ≥ 0 steps, got {self.warmup}")
        if self.batch_size % world:
            raise DepthlensError(
                f"--batch-size {self.batch_size} is not divisible by the {world} processes; "
                "the global batch is split evenly across them"
            )

    def identity(self) -> dict[str, Any]:
        """What determines the trained weights (a checkpoint resumes only the same run)."""
        return dataclasses.asdict(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
