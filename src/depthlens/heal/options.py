"""The choices of a healing run; every one of them goes into the healed checkpoint's record."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from depthlens.errors import DepthlensError

#: What trains: LoRA on the kept blocks next to each cut, LoRA on every block, or only the
#: MLP output projections that absorbed a least-squares map.
TRAIN_CHOICES = ("lora", "blocks", "maps")


@dataclass(frozen=True)
class HealOptions:
    """A distillation run: its token budget, schedule, held-out curve and what trains."""

    tokens: int = 65536  # healing token budget (window tokens, BOS included)
    steps: int | None = None  # when set, the budget in optimizer steps instead of tokens
    seq_len: int = 256
    batch_size: int = 4
    lr: float = 5e-4
    warmup: float = 0.05  # fraction of the steps with a linear warm-up
    min_lr: float = 0.1  # the cosine ends at min_lr × lr
    train: str = "lora"
    lora_rank: int = 8
    lora_alpha: int = 16
    neighbours: int = 1  # --train lora: kept blocks on each side of a cut that get LoRA
    mse_weight: float = 0.0
    eval_every: int = 0  # steps between held-out evaluations; 0 = ten points on the curve
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop
    min_delta: float = 1e-3  # held-out NLL improvement (nats) that counts
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = at each evaluation
    seed: int = 0

    @property
    def tokens_per_step(self) -> int:
        """Window tokens one optimizer step reads."""
        return self.batch_size * self.seq_len

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole budget (the schedule's length)."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.tokens / self.tokens_per_step))

    @property
    def eval_interval(self) -> int:
        """Steps between held-out evaluations."""
        return self.eval_every or max(1, self.total_steps // 10)

    @property
    def checkpoint_interval(self) -> int:
        """Steps between resumable checkpoints."""
        return self.checkpoint_every or self.eval_interval

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine."""
        total = self.total_steps
        warm = int(self.warmup * total)
        if step < warm:
            return self.lr * (step + 1) / warm
        done = (step - warm) / max(1, total - warm)
        return self.lr * (self.min_lr + (1 - self.min_lr) * 0.5 * (1 + math.cos(math.pi * done)))

    def validate(self) -> None:
        """Refuse options that cannot train (before any model is loaded)."""
        if self.train not in TRAIN_CHOICES:
            from depthlens.registry import unknown_choice

            raise DepthlensError(unknown_choice("--train", self.train, list(TRAIN_CHOICES)))
        if self.steps is not None and self.steps < 1:
            raise DepthlensError(
                f"--steps must be at least 1, got {self.steps}; healing with no "
                "step would only copy the checkpoint"
            )
        if self.steps is None and self.tokens < self.seq_len:
            raise DepthlensError(
                f"--tokens {self.tokens} is less than one window of --seq-len {self.seq_len}; "
                "healing with no step would only copy the checkpoint"
            )
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


def _check_ranges(o: HealOptions) -> None:
    bad = [
        f"{name} {value}"
        for name, value, ok in [
            ("--lr", o.lr, o.lr > 0),
            ("--seq-len", o.seq_len, o.seq_len >= 2),
            ("--batch-size", o.batch_size, o.batch_size >= 1),
            ("--lora-rank", o.lora_rank, o.lora_rank >= 1),
            ("--neighbours", o.neighbours, o.neighbours >= 1),
            ("--mse-weight", o.mse_weight, o.mse_weight >= 0),
            ("--warmup", o.warmup, 0 <= o.warmup < 1),
            ("--min-lr", o.min_lr, 0 <= o.min_lr <= 1),
            ("--eval-every", o.eval_every, o.eval_every >= 0),
            ("--patience", o.patience, o.patience >= 0),
            ("--checkpoint-every", o.checkpoint_every, o.checkpoint_every >= 0),
        ]
        if not ok
    ]
    if bad:
        raise DepthlensError(
            f"out of range: {', '.join(bad)}; --lr must be > 0, --seq-len >= 2, --batch-size, "
            "--lora-rank and --neighbours >= 1, --warmup in [0, 1), --min-lr in [0, 1], "
            "--mse-weight, --eval-every, --patience and --checkpoint-every >= 0"
        )
