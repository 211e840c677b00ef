"""One streaming pass over the data with hooks on the unmodified model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.data.masks import last_positions, next_token_ids, real_positions
from depthlens.data.windows import TokenWindows
from depthlens.dist import rank_world
from depthlens.errors import DepthlensError
from depthlens.metrics import residual
from depthlens.metrics.accumulate import Accumulator, ratio
from depthlens.metrics.catalog.residual import RESID_NORM
from depthlens.metrics.lens import LensKernel, Readout
from depthlens.metrics.lens_sums import LensSums, accumulate_lens
from depthlens.metrics.readout import readout_for
from depthlens.metrics.residual import ResidualSums
from depthlens.models.loading import LoadedModel
from depthlens.profiling import checkpoint as ckpt
from depthlens.profiling.result import Profile, ProfileOptions
from depthlens.progress import progress_bar
from depthlens.results import Envelope, clean_json


@dataclass(frozen=True)
class TokenMasks:
    """Which positions each statistic sees, fixed before sharding (so ranks agree)."""

    valid: torch.Tensor  # (W, T) residual metrics
    angular: torch.Tensor  # (W, T) angular distance (all valid, or last per window)
    lens: torch.Tensor  # (W, T) seeded subset of valid for the lens
    next_ids: torch.Tensor  # (W, T) next token id or -1


def token_masks(data: TokenWindows, opts: ProfileOptions) -> TokenMasks:
    """Build the masks of SPEC: padding out, first position out unless asked, lens cap."""
    valid = real_positions(data.attention_mask, opts.include_first_token)
    angular = last_positions(data.attention_mask) & valid if opts.last_token_only else valid
    lens = valid.clone()
    n_valid = int(valid.sum())
    if opts.lens_tokens is not None and n_valid > opts.lens_tokens:
        gen = torch.Generator().manual_seed(opts.seed)
        keep = torch.randperm(n_valid, generator=gen)[: opts.lens_tokens]
        flat = torch.zeros(n_valid, dtype=torch.bool)
        flat[keep] = True
        lens = torch.zeros_like(valid)
        lens[valid] = flat
    return TokenMasks(valid, angular, lens, next_token_ids(data))


@dataclass
class ProfileSums(Accumulator):
    """Everything one profile accumulates; ``lens`` is None when the lens is off."""

    residual: ResidualSums
    lens: LensSums | None

    @classmethod
    def zeros(cls, n_layers: int, n_max: int, with_lens: bool) -> ProfileSums:
        """Accumulators with their final shapes (all ranks agree)."""
        return cls(
            ResidualSums.zeros(n_layers, n_max), LensSums.zeros(n_layers) if with_lens else None
        )


def run_identity(lm: LoadedModel, data: TokenWindows, opts: ProfileOptions, world: int = 1) -> str:
    """Hash of what determines the result; a checkpoint resumes only a run with the same.

    The world size is part of it: a rank's checkpoint holds the sums of its own shard.
    """
    ident = {
        "model": {k: v for k, v in lm.identity().items() if k != "path"},
        "data": data.identity,
        "options": opts.to_dict(),
        "world_size": world,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Run:
    """What one profile pass holds: its sums, its lens (if any) and its checkpointer."""

    opts: ProfileOptions
    n_max: int
    masks: TokenMasks
    sums: ProfileSums
    lens: Readout | None
    lens_info: dict[str, Any]
    kernel: LensKernel
    saver: ckpt.Checkpointer | None
    done: int  # batches already in the restored sums
    rank: int
    world: int


def _start(
    lm: LoadedModel,
    data: TokenWindows,
    opts: ProfileOptions,
    checkpoint_path: str | Path | None,
    checkpoint_every: int,
) -> _Run:
    """Validate, build the masks and sums, resume from a checkpoint, pick the lens."""
    opts.validate()
    n_layers = lm.num_layers
    n_max = min(opts.n_max or max(1, n_layers // 2), n_layers)
    with_lens = opts.lens and lm.arch.has_lens
    masks = token_masks(data, opts)
    if int(masks.valid.sum()) == 0:
        raise DepthlensError("no real tokens to profile; use a longer text or --seq-len")
    rank, world = rank_world()
    sums = ProfileSums.zeros(n_layers, n_max, with_lens)
    run_id = run_identity(lm, data, opts, world)
    saver = ckpt.Checkpointer.create(checkpoint_path, checkpoint_every, run_id, rank)
    done = saver.restore(sums) if saver else 0
    lens, lens_info = readout_for(lm, opts.lens_readout) if with_lens else (None, {})
    kernel = LensKernel(opts.lens_kernel if with_lens else "eager")
    return _Run(opts, n_max, masks, sums, lens, lens_info, kernel, saver, done, rank, world)


def profile(
    lm: LoadedModel,
    data: TokenWindows,
    options: ProfileOptions | None = None,
    *,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
    keep_checkpoint: bool = False,
) -> Profile:
    """Profile how ``lm`` uses its depth on ``data`` in one streaming pass.

    Under ``torchrun`` each rank takes every world-th window and the float64 sums are
    all-reduced, so any number of processes gives the same result. With
    ``checkpoint_every=N`` the sums are saved atomically every N batches and a restarted
    run with the same inputs resumes from them. The checkpoint is deleted when the sums
    are final, unless ``keep_checkpoint``: a caller with more work before its output is on
    disk (``profile --causal``, the write itself) keeps it and calls
    :func:`depthlens.profiling.checkpoint.discard` after the write, so a kill in between
    resumes instead of starting over.
    """
    run = _start(lm, data, options or ProfileOptions(), checkpoint_path, checkpoint_every)
    _stream(lm, data, run, progress)
    run.sums.all_reduce()
    result = finalize(lm, data, run.opts, run.sums, run.n_max)
    if run.lens is not None:
        result.summary["lens_kernel_used"] = run.kernel.used
        result.summary["lens_readout"] = run.lens_info
    if run.saver and not keep_checkpoint:
        run.saver.remove()
    return result


def _stream(lm: LoadedModel, data: TokenWindows, run: _Run, progress: bool) -> None:
    """The one pass: forward each batch of this rank's windows and add its statistics."""
    batches = list(enumerate(data.row_batches(run.opts.batch_size, run.rank, run.world)))
    bar = progress_bar(
        len(batches), "profile", enabled=progress and run.rank == 0, initial=run.done
    )
    with capture_blocks(lm.model, lm.arch) as trace, torch.inference_mode():
        for b, rows in batches[run.done :]:
            _forward_batch(lm, data, rows, trace)
            _accumulate_batch(
                run.sums,
                trace,
                run.masks,
                rows,
                run.lens,
                run.kernel,
                run.opts,
                run.n_max,
                parallel=lm.arch.wiring.parallel,
            )
            trace.clear()
            bar.update(1)
            if run.saver:
                run.saver.maybe_save(run.sums, b + 1)
    bar.close()


def _forward_batch(lm: LoadedModel, data: TokenWindows, rows: torch.Tensor, trace: Any) -> None:
    """One forward of windows ``rows`` on the model's device; ``trace`` captures it."""
    trace.clear()
    run_forward(
        lm.model,
        data.input_ids[rows].to(lm.device),
        data.attention_mask[rows].to(lm.device),
        **forward_kwargs(lm.model),
    )


def _accumulate_batch(
    sums: ProfileSums,
    trace: Any,
    masks: TokenMasks,
    rows: torch.Tensor,
    lens: Readout | None,
    kernel: LensKernel,
    opts: ProfileOptions,
    n_max: int,
    *,
    parallel: bool = False,
) -> None:
    n_layers = len(trace.attn)
    dev = trace.states[0].device

    def pick(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return t[m.to(t.device)].to(dev)  # (N, d)

    valid = masks.valid[rows]
    states = [pick(s, valid) for s in trace.states]
    res = sums.residual
    for l in range(n_layers):
        residual.accumulate_block(
            res, l, states[l], states[l + 1], pick(trace.attn[l], valid), parallel=parallel
        )
    res.n_tokens += float(valid.sum())
    ang = masks.angular[rows]
    ang_states = [pick(s, ang) for s in trace.states] if opts.last_token_only else states
    residual.accumulate_states(res, ang_states, n_max)
    res.n_angular_tokens += float(ang.sum())
    if lens is None or sums.lens is None:
        return
    sel = masks.lens[rows]
    if not bool(sel.any()):
        return
    offset = 1 if opts.lens_at == "output" else 0
    layer_states = [pick(trace.states[l + offset], sel) for l in range(n_layers)]
    final = pick(trace.states[n_layers], sel)
    nxt = masks.next_ids[rows][sel]
    accumulate_lens(
        sums.lens, lens, layer_states, final, nxt, offset, chunk=opts.lens_chunk, kernel=kernel
    )


def _means(num: torch.Tensor, count: torch.Tensor) -> list[float | None]:
    return [clean_json(v) for v in ratio(num, count).tolist()]


def finalize(
    lm: LoadedModel,
    data: TokenWindows,
    opts: ProfileOptions,
    sums: ProfileSums,
    n_max: int,
) -> Profile:
    """Turn the accumulated sums into a :class:`Profile`."""
    n_layers = lm.num_layers
    res = sums.residual
    metrics: dict[str, list[float | None]] = {
        name: _means(total, res.n_tokens) for name, total in res.block_sums().items()
    }
    metrics[RESID_NORM.name] = _means(res.resid_norm, res.n_tokens)
    ang = ratio(res.angular_distance, res.n_angular_tokens)
    angular = [
        [
            clean_json(ang[l, n - 1].item()) if l + n <= n_layers else None
            for n in range(1, n_max + 1)
        ]
        for l in range(n_layers)
    ]
    tokens = {"residual": int(res.n_tokens), "angular": int(res.n_angular_tokens), "lens": 0}
    depth: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    if sums.lens is not None:
        depth, summary = _finalize_lens(sums.lens, metrics, tokens)
    env = Envelope(
        kind=Profile.KIND,
        model=lm.identity(),
        data=data.identity,
        options={**opts.to_dict(), "n_max": n_max},
        tokens=tokens,
    )
    return Profile(
        envelope=env,
        arch=lm.arch.to_dict(),
        metrics=metrics,
        angular_distance=angular,
        prediction_depth=depth,
        summary=summary,
    )


def _finalize_lens(
    lens: LensSums, metrics: dict[str, list[float | None]], tokens: dict[str, int]
) -> tuple[dict, dict]:
    """Lens means into ``metrics``/``tokens``; returns (prediction depth, summary)."""
    metrics.update(lens.means())
    tokens["lens"] = int(lens.n_lens_tokens)
    tokens["ce"] = int(lens.n_ce_tokens)
    return lens.depth_summary(), {"loss": lens.loss()}
