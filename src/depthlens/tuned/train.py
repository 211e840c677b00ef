"""Training the tuned lens on a frozen model's residual stream (Belrose et al. 2023).

Loss of translator l: KL(p_L ‖ p_l(h_l)), mean over tokens, as in the tuned-lens reference
implementation; the layers' losses are summed (their parameters are disjoint, so each
translator sees exactly its own layer's gradient). Optimiser: SGD with Nesterov momentum
(the reference's default: lr 1, momentum 0.9, weight decay 1e-3, linear warm-up then linear
decay; the learning rate defaults differ, see :attr:`TrainOptions.lr_used`) or Adam.
Windows are streamed: each step runs the frozen model on one batch of
windows, so memory is the translators, their optimiser state and one batch, whatever the
number of tokens.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.data.masks import real_positions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.io import atomic_dir
from depthlens.metrics.accumulate import host_sum
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar
from depthlens.results import Envelope
from depthlens.tuned.lens import LENS_KIND, TunedLens, save_lens
from depthlens.tuned.result import HeldoutKL, LensTraining, TunedLensResult


@dataclass(frozen=True)
class TrainOptions:
    """Every choice of a tuned-lens training run; all of it is saved with the lens."""

    steps: int = 0  # optimiser steps; 0 = one pass over the windows
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float | None = None  # None: 1e-3 for SGD, 1e-4 for Adam (see lr_used)
    momentum: float = 0.9
    weight_decay: float = 1e-3
    warmup: float = 0.1  # share of the steps with a linear warm-up
    batch_size: int = 4  # windows per step
    token_chunk: int | None = None  # tokens per lens chunk; None = ~128 MB of logits
    include_first_token: bool = False  # the attention sink's state is excluded by default
    init: Literal["identity", "lstsq"] = "identity"  # lstsq: ridge fit h_L ≈ translator(h_l)
    seed: int = 0
    eval_every: int = 0  # steps between held-out KL measurements; 0 = about 8 per run

    def validate(self) -> None:
        """Raise a user-facing error for out-of-range values."""
        if self.steps < 0:
            raise DepthlensError(f"--steps must be ≥ 0 (0 = one pass), got {self.steps}")
        if self.optimizer not in ("sgd", "adam"):
            raise DepthlensError(f"--optimizer must be sgd or adam, got '{self.optimizer}'")
        if self.lr is not None and not self.lr > 0:
            raise DepthlensError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise DepthlensError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise DepthlensError(f"--weight-decay must be ≥ 0, got {self.weight_decay}")
        if not 0 <= self.warmup < 1:
            raise DepthlensError(f"--warmup must be a share in [0, 1), got {self.warmup}")
        if self.batch_size < 1:
            raise DepthlensError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.init not in ("identity", "lstsq"):
            raise DepthlensError(f"--init must be identity or lstsq, got '{self.init}'")
        if self.eval_every < 0:
            raise DepthlensError(f"--eval-every must be ≥ 0, got {self.eval_every}")
        if self.token_chunk is not None and self.token_chunk < 1:
            raise DepthlensError(f"--token-chunk must be ≥ 1, got {self.token_chunk}")

    @property
    def lr_used(self) -> float:
        """The learning rate; defaults differ from the reference's (SGD 1.0, Adam 1e-3).

        The reference's SGD rate 1.0 is tuned for 2^18-token batches; with the few hundred
        tokens per step a CPU affords it diverged on SmolLM2-135M (from the least-squares
        start, held-out KL of blocks 8-22 rose from ~2-3 to 60-210 nats after two steps of
        127 tokens; Adam at 1e-4 lowered it at every block). From the identity start SGD at
        0.01 diverged too (KL on the next, unseen window 16 -> 121 nats after one step of 63
        tokens) while 1e-3 lowered it (16.3 -> 12.6 -> 11.8 -> 11.5); hence 1e-3 and 1e-4.
        """
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "sgd" else 1e-4)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {**asdict(self), "lr_used": self.lr_used}


class _KLFromLogits(torch.autograd.Function):
    """KL(p ‖ softmax(z)) per row, with the closed-form gradient softmax(z) − p.

    Autograd of the plain expression keeps several (tokens × vocab) tensors alive; this
    keeps only z, so the token chunk can be larger.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, logp: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        kl = (p * (logp - (z - lse))).sum(-1)
        ctx.save_for_backward(z, lse, p)
        return kl

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        z, lse, p = ctx.saved_tensors
        grad = (z - lse).exp_().sub_(p).mul_(grads[0].unsqueeze(-1))
        return grad, None, None


def kl_from_logits(z: torch.Tensor, logp: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ softmax(z)) over the last axis; ``p``/``logp`` broadcast against ``z``."""
    out: torch.Tensor = _KLFromLogits.apply(z, logp, p)
    return out


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Parameters of ``modules`` do not require grad inside (no unembedding gradient)."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    old = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, r in zip(params, old, strict=True):
            p.requires_grad_(r)


def train_positions(data: TokenWindows, include_first: bool) -> torch.Tensor:
    """(W, T) bool: real tokens, the first position of each window out unless asked."""
    return real_positions(data.attention_mask, include_first)


def make_optimizer(lens: TunedLens, opts: TrainOptions, steps: int) -> tuple[Any, Any]:
    """The optimiser and a warm-up + linear-decay schedule (as the reference)."""
    params = list(lens.translators.parameters())
    opt: torch.optim.Optimizer
    if opts.optimizer == "sgd":
        opt = torch.optim.SGD(
            params,
            lr=opts.lr_used,
            momentum=opts.momentum,
            nesterov=True,
            weight_decay=opts.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(params, lr=opts.lr_used, weight_decay=opts.weight_decay)
    warm = max(1, math.ceil(opts.warmup * steps)) if opts.warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (steps - step) / max(1, steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def lens_step(
    lens: TunedLens, states: list[torch.Tensor], chunk: int, *, backward: bool = True
) -> torch.Tensor:
    """Forward (+ backward) of one batch; returns the (L,) mean KL per translator.

    ``states``: h_0..h_L for the batch's selected tokens, each (N, d).
    """
    n_layers = lens.n_layers
    n = states[0].shape[0]
    total = torch.zeros(n_layers, dtype=torch.float64)
    for c0 in range(0, n, chunk):
        sl = slice(c0, c0 + chunk)
        with torch.no_grad():
            z_fin = lens.logits(states[n_layers][sl], n_layers)  # (c, V)
            logp_fin = torch.log_softmax(z_fin, dim=-1)
            p_fin = logp_fin.exp()
        x = torch.cat([lens.translate(states[l][sl], l) for l in range(n_layers)])  # (L·c, d)
        z = lens.base.logits(x).view(n_layers, -1, z_fin.shape[-1])  # (L, c, V)
        kl = kl_from_logits(z, logp_fin, p_fin)  # (L, c)
        if backward:
            (kl.sum() / n).backward()
        total += host_sum(kl, dim=1)
    return total / n


def default_token_chunk(lens: TunedLens) -> int:
    """Tokens per chunk so that the (L × tokens × V) logits take about 128 MB."""
    weight: Any = lens.unembed.weight  # (V, d)
    vocab = int(weight.shape[0])
    return max(1, 2**25 // max(1, lens.n_layers * vocab))


def collect_states(
    lm: LoadedModel, data: TokenWindows, valid: torch.Tensor, batch_size: int
) -> list[torch.Tensor]:
    """h_0..h_L of the ``valid`` positions of every window, each (N, d), kept in memory."""
    fkw, parts = forward_kwargs(lm.model), []
    with frozen(lm.model), capture_blocks(lm.model, lm.arch, attn=False) as trace:
        for s in range(0, len(data), batch_size):
            rows = torch.arange(s, min(s + batch_size, len(data)))
            trace.clear()
            with torch.no_grad():
                run_forward(
                    lm.model,
                    data.input_ids[rows].to(lm.device),
                    data.attention_mask[rows].to(lm.device),
                    **fkw,
                )
            sel = valid[rows]
            parts.append([t[sel.to(t.device)].detach() for t in trace.all_states()])
            trace.clear()
    return [torch.cat(p) for p in zip(*parts, strict=True)]


def heldout_kl(lens: TunedLens, states: list[torch.Tensor], chunk: int) -> list[float]:
    """Mean KL(p_L ‖ p_l) per translator on held-out states (no gradient)."""
    with torch.no_grad():
        return [float(v) for v in lens_step(lens, states, chunk, backward=False)]


def _initialise(
    lens: TunedLens, lm: LoadedModel, data: TokenWindows, valid: torch.Tensor, opts: TrainOptions
) -> dict[str, Any]:
    t0 = time.perf_counter()
    tokens = 0
    if opts.init == "lstsq":
        from depthlens.tuned.init import lstsq_init_

        tokens = lstsq_init_(lens, lm, data, valid, opts.batch_size)
    return {"kind": opts.init, "tokens": tokens, "seconds": time.perf_counter() - t0}


def _run_steps(
    lens: TunedLens,
    lm: LoadedModel,
    data: TokenWindows,
    opts: TrainOptions,
    heldout: list[torch.Tensor] | None,
    progress: bool,
) -> dict[str, Any]:
    """The optimiser steps; the training KL of every step, the held-out KL every few."""
    valid = train_positions(data, opts.include_first_token)
    batches = [
        torch.arange(s, min(s + opts.batch_size, len(data)))
        for s in range(0, len(data), opts.batch_size)
    ]
    steps = opts.steps or len(batches)
    every = opts.eval_every or max(1, steps // 8)
    opt, sched = make_optimizer(lens, opts, steps)
    chunk = opts.token_chunk or default_token_chunk(lens)
    fkw, per_layer, n_tokens = forward_kwargs(lm.model), [], 0
    curve: dict[str, list[Any]] = {"tokens": [], "kl": []}
    if heldout is not None:
        curve["tokens"].append(0)
        curve["kl"].append(heldout_kl(lens, heldout, chunk))
    bar = progress_bar(steps, "lens train", enabled=progress)
    with frozen(lm.model), capture_blocks(lm.model, lm.arch, attn=False) as trace:
        for step in range(steps):
            rows = batches[step % len(batches)]  # more steps than batches: cycle the data
            trace.clear()
            with torch.no_grad():
                ids, mask = data.input_ids[rows], data.attention_mask[rows]
                run_forward(lm.model, ids.to(lm.device), mask.to(lm.device), **fkw)
            sel = valid[rows]
            states = [s[sel.to(s.device)].detach() for s in trace.all_states()]
            trace.clear()
            opt.zero_grad(set_to_none=True)
            per_layer.append(lens_step(lens, states, chunk))
            opt.step()
            sched.step()
            n_tokens += int(sel.sum())
            if heldout is not None and ((step + 1) % every == 0 or step + 1 == steps):
                curve["tokens"].append(n_tokens)
                curve["kl"].append(heldout_kl(lens, heldout, chunk))
            bar.update(1)
    bar.close()
    return {"steps": steps, "tokens": n_tokens, "per_layer": per_layer, "heldout": curve}


def train_lens(
    lm: LoadedModel,
    data: TokenWindows,
    options: TrainOptions | None = None,
    *,
    progress: bool = True,
    heldout: TokenWindows | None = None,
) -> tuple[TunedLens, LensTraining]:
    """Train a tuned lens for ``lm`` on ``data``; returns it and its training record.

    With ``heldout`` windows, the record's ``heldout_kl`` holds the mean KL per translator
    on them after the initialisation and every ``eval_every`` steps, against the training
    tokens seen: the curve that shows whether the budget was enough.
    """
    opts = options or TrainOptions()
    opts.validate()
    torch.manual_seed(opts.seed)
    lens = TunedLens.for_model(lm)
    t0 = time.perf_counter()
    init = _initialise(lens, lm, data, train_positions(data, opts.include_first_token), opts)
    held = None
    if heldout is not None:
        held = collect_states(lm, heldout, train_positions(heldout, False), opts.batch_size)
    run = _run_steps(lens, lm, data, opts, held, progress)
    per_layer, tail = run["per_layer"], max(1, run["steps"] // 10)
    curve = None
    if heldout is not None:
        n_held = int(held[0].shape[0]) if held else 0
        curve = HeldoutKL(**run["heldout"], data=heldout.identity, n_tokens=n_held)
    record = LensTraining(
        steps=run["steps"],
        tokens_seen=run["tokens"],
        unique_windows=len(data),
        seconds=time.perf_counter() - t0,
        init=init,
        loss_first_step=[float(v) for v in per_layer[0]],
        loss_last_steps=[float(v) for v in torch.stack(per_layer[-tail:]).mean(0)],
        loss_last_steps_n=tail,
        loss_curve_mean_over_layers=[float(v.mean()) for v in per_layer],
        heldout_kl=curve,
    )
    lens.eval()
    return lens, record


def train_and_save(
    lm: LoadedModel,
    data: TokenWindows,
    out: str | Path,
    options: TrainOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    heldout: TokenWindows | None = None,
) -> TunedLensResult:
    """Train a tuned lens and write it to the folder ``out`` (atomically); its ``lens.json``."""
    opts = options or TrainOptions()
    opts.validate()
    if Path(out).exists() and not overwrite:
        raise DepthlensError(
            f"output {out} already exists; pass --overwrite or choose another folder"
        )
    lens, record = train_lens(lm, data, opts, progress=progress, heldout=heldout)
    env = Envelope(
        kind=LENS_KIND,
        model=lm.identity(),
        data=data.identity,
        options=opts.to_dict(),
        tokens={"train": record.tokens_seen},
    )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        result = save_lens(lens, tmp, env, record)
    return result
