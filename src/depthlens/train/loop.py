"""The training loop: AdamW, warmup + cosine, clipping, bf16 autocast on GPU, DDP.

One page in the nanoGPT manner. Under ``torchrun`` every rank takes rows ``rank::world``
of the same global batch and DDP averages the gradients, so 1 and K processes follow the
same loss curve (up to float summation order). The batch of step s and the drop-path
randomness depend only on (seed, s), which makes checkpoints resume exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from depthlens.dist import rank_world
from depthlens.errors import DepthlensError
from depthlens.train.checkpoint import TrainState, checkpoint_path, save_checkpoint
from depthlens.train.config import TrainConfig


class NonFiniteLossError(DepthlensError):
    """The loss became NaN or inf; the message names the step and the last checkpoint."""


@dataclass(frozen=True)
class Chunks:
    """The training text cut into (N, context + 1) rows; row i of step s is seeded."""

    rows: torch.Tensor  # (N, context + 1) int64
    seed: int

    @classmethod
    def of(cls, stream: torch.Tensor, context: int, seed: int) -> Chunks:
        """Non-overlapping windows (neighbours share one token: the last target)."""
        n = (stream.numel() - 1) // context
        if n < 1:
            raise DepthlensError(
                f"the training text has {stream.numel()} tokens, fewer than one --context "
                f"{context} window; use a longer text or a smaller --context"
            )
        idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)  # (N, T+1)
        return cls(stream[idx], seed)

    def global_batch(self, step: int, batch_size: int) -> torch.Tensor:
        """Rows of step ``step``: epochs are seeded permutations walked in order, (B, T+1)."""
        n = self.rows.shape[0]
        pos = torch.arange(step * batch_size, (step + 1) * batch_size)
        out = torch.empty(batch_size, dtype=torch.long)
        for epoch in pos.div(n, rounding_mode="floor").unique().tolist():
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen)
            sel = pos.div(n, rounding_mode="floor") == epoch
            out[sel] = perm[pos[sel] % n]
        return self.rows[out]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr_ratio``·lr at the last step."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * t))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms, gates or biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def step_loss(model: torch.nn.Module, batch: torch.Tensor, autocast: bool) -> torch.Tensor:
    """Mean next-token cross-entropy of one (B, T+1) batch."""
    x, y = batch[:, :-1], batch[:, 1:]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=x).logits  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def _mean_over_ranks(x: torch.Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        x = x.detach().clone()
        dist.all_reduce(x)
        x /= world
    return float(x.detach())


@dataclass
class LoopHooks:
    """What the loop reports to: progress and checkpointing (rank 0 only)."""

    out: Path | None
    checkpoint_every: int
    identity: dict[str, Any]
    progress: Callable[[int, float, float], None] | None = None  # (step, loss, tok/s)


def train_loop(
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    chunks: Chunks,
    cfg: TrainConfig,
    state: TrainState,
    hooks: LoopHooks,
    device: torch.device,
) -> TrainState:
    """Run steps ``state.step .. cfg.steps-1``; returns the final state."""
    rank, world = rank_world()
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = device.type == "cuda"
    net.train()
    t0, c0, start_step = time.perf_counter(), time.process_time(), state.step
    for step in range(state.step, cfg.steps):
        for g in optim.param_groups:
            g["lr"] = lr_at(step, cfg)
        batch = chunks.global_batch(step, cfg.batch_size)[rank::world].to(device)
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # drop-path masks of this step
        loss = step_loss(net, batch, autocast)
        value = _mean_over_ranks(loss, world)
        if not math.isfinite(value):
            raise NonFiniteLossError(_nan_message(value, step, hooks.out))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optim.step()
        optim.zero_grad(set_to_none=True)
        state.step = step + 1
        state.losses.append(value)
        elapsed = time.perf_counter() - t0
        if hooks.progress is not None and rank == 0:
            tps = (state.step - start_step) * cfg.tokens_per_step / max(elapsed, 1e-9)
            hooks.progress(state.step, value, tps)
        every = hooks.checkpoint_every
        if every and hooks.out is not None and state.step % every == 0 and state.step < cfg.steps:
            if rank == 0:
                saved = TrainState(
                    state.step,
                    state.losses,
                    state.seconds + elapsed,
                    state.cpu_seconds + time.process_time() - c0,
                )
                save_checkpoint(hooks.out, model, optim, saved, hooks.identity)
            if world > 1:
                import torch.distributed as dist

                dist.barrier()
    state.seconds += time.perf_counter() - t0
    state.cpu_seconds += time.process_time() - c0
    return state


def _nan_message(value: float, step: int, out: Path | None) -> str:
    where = "no checkpoint was written (use --checkpoint-every)"
    if out is not None and checkpoint_path(out).is_file():
        blob = torch.load(checkpoint_path(out), map_location="cpu", weights_only=True)
        where = f"the last good checkpoint (step {blob['step']}) stays in {out / 'checkpoint'}"
    return (
        f"the training loss is {value} at step {step + 1}; stopped, {where}; "
        "lower --lr or raise --warmup"
    )
