"""One streaming pass over the data with hooks on the unmodified model."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics import lens as lens_metrics
from depthlens.metrics import residual
from depthlens.metrics.accumulate import Sums
from depthlens.models.loading import LoadedModel
from depthlens.profiling import checkpoint as ckpt
from depthlens.profiling.result import Profile, ProfileOptions, clean_float
from depthlens.progress import progress_bar


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class TokenMasks:
    """Which positions each statistic sees, fixed before sharding (so ranks agree)."""

    valid: torch.Tensor  # (W, T) residual metrics
    angular: torch.Tensor  # (W, T) angular distance (all valid, or last per window)
    lens: torch.Tensor  # (W, T) seeded subset of valid for the lens
    next_ids: torch.Tensor  # (W, T) next token id or -1


def token_masks(data: TokenWindows, opts: ProfileOptions) -> TokenMasks:
    """Build the masks of SPEC: padding out, first position out unless asked, lens cap."""
    am = data.attention_mask.bool()
    valid = am.clone()
    if not opts.include_first_token:
        first = am.long().argmax(dim=1)  # first real position of each window
        valid[torch.arange(am.shape[0]), first] = False
    if opts.last_token_only:
        last = am.shape[1] - 1 - am.flip(1).long().argmax(dim=1)
        angular = torch.zeros_like(valid)
        angular[torch.arange(am.shape[0]), last] = True
        angular &= valid
    else:
        angular = valid
    lens = valid.clone()
    n_valid = int(valid.sum())
    if opts.lens_tokens is not None and n_valid > opts.lens_tokens:
        gen = torch.Generator().manual_seed(opts.seed)
        keep = torch.randperm(n_valid, generator=gen)[: opts.lens_tokens]
        flat = torch.zeros(n_valid, dtype=torch.bool)
        flat[keep] = True
        lens = torch.zeros_like(valid)
        lens[valid] = flat
    nxt = torch.full_like(data.input_ids, -1)
    nxt[:, :-1] = torch.where(am[:, 1:], data.input_ids[:, 1:], -1)
    return TokenMasks(valid, angular, lens, nxt)


def _batches(
    data: TokenWindows, masks: TokenMasks, bs: int, rank: int, world: int
) -> Iterator[tuple[int, torch.Tensor]]:
    idx = torch.arange(rank, data.input_ids.shape[0], world)
    for b, start in enumerate(range(0, len(idx), bs)):
        yield b, idx[start : start + bs]


def _new_sums(n_layers: int, n_max: int, with_lens: bool) -> Sums:
    sums = Sums()
    residual.init_sums(sums, n_layers, n_max)
    if with_lens:
        lens_metrics.init_sums(sums, n_layers)
    return sums


def run_identity(
    lm: LoadedModel, data: TokenWindows, opts: ProfileOptions, world: int = 1
) -> str:
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


def profile(
    lm: LoadedModel,
    data: TokenWindows,
    options: ProfileOptions | None = None,
    *,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 0,
) -> Profile:
    """Profile how ``lm`` uses its depth on ``data`` in one streaming pass.

    Under ``torchrun`` each rank takes every world-th window and the float64 sums are
    all-reduced, so any number of processes gives the same result. With
    ``checkpoint_every=N`` the sums are saved atomically every N batches and a restarted
    run with the same inputs resumes from them.
    """
    opts = options or ProfileOptions()
    opts.validate()
    spec, model = lm.arch, lm.model
    n_layers = lm.num_layers
    n_max = min(opts.n_max or max(1, n_layers // 2), n_layers)
    with_lens = opts.lens and spec.has_lens
    masks = token_masks(data, opts)
    if int(masks.valid.sum()) == 0:
        raise DepthlensError("no real tokens to profile; use a longer text or --seq-len")
    rank, world = dist_rank_world()
    sums = _new_sums(n_layers, n_max, with_lens)
    run_id = run_identity(lm, data, opts, world)
    saver = ckpt.Checkpointer.create(checkpoint_path, checkpoint_every, run_id, rank)
    done = saver.restore(sums) if saver else 0
    lens = lens_metrics.Lens.of(model, spec) if with_lens else None
    kernel = lens_metrics.LensKernel(opts.lens_kernel if with_lens else "eager")
    fkw = forward_kwargs(model)
    device = lm.device
    batches = list(_batches(data, masks, opts.batch_size, rank, world))
    bar = progress_bar(len(batches), "profile", enabled=progress and rank == 0, initial=done)
    with capture_blocks(model, spec) as trace, torch.inference_mode():
        for b, rows in batches:
            if b < done:
                continue
            trace.clear()
            run_forward(
                model,
                data.input_ids[rows].to(device),
                data.attention_mask[rows].to(device),
                **fkw,
            )
            _accumulate_batch(sums, trace, masks, rows, lens, kernel, opts, n_max)
            trace.clear()
            bar.update(1)
            if saver:
                saver.maybe_save(sums, b + 1)
    bar.close()
    sums.all_reduce()
    result = finalize(lm, data, opts, sums, n_max, with_lens)
    if with_lens:
        result.summary["lens_kernel_used"] = kernel.used
    if saver:
        saver.remove()
    return result


def _accumulate_batch(
    sums: Sums,
    trace: Any,
    masks: TokenMasks,
    rows: torch.Tensor,
    lens: lens_metrics.Lens | None,
    kernel: lens_metrics.LensKernel,
    opts: ProfileOptions,
    n_max: int,
) -> None:
    n_layers = len(trace.attn)
    dev = trace.states[0].device

    def pick(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return t[m.to(t.device)].to(dev)  # (N, d)

    valid = masks.valid[rows]
    states = [pick(s, valid) for s in trace.states]
    for l in range(n_layers):
        residual.accumulate_block(sums, l, states[l], states[l + 1], pick(trace.attn[l], valid))
    sums.t["n_tokens"] += float(valid.sum())
    ang = masks.angular[rows]
    ang_states = [pick(s, ang) for s in trace.states] if opts.last_token_only else states
    residual.accumulate_states(sums, ang_states, n_max)
    sums.t["n_angular_tokens"] += float(ang.sum())
    if lens is None:
        return
    sel = masks.lens[rows]
    if not bool(sel.any()):
        return
    offset = 1 if opts.lens_at == "output" else 0
    layer_states = [pick(trace.states[l + offset], sel) for l in range(n_layers)]
    final = pick(trace.states[n_layers], sel)
    nxt = masks.next_ids[rows][sel]
    lens_metrics.accumulate_lens(
        sums, lens, layer_states, final, nxt, offset, chunk=opts.lens_chunk, kernel=kernel
    )


def _mean_list(sums: Sums, name: str, count: str) -> list[float | None]:
    return [clean_float(v) for v in sums.mean(name, count).tolist()]


def finalize(
    lm: LoadedModel,
    data: TokenWindows,
    opts: ProfileOptions,
    sums: Sums,
    n_max: int,
    with_lens: bool,
) -> Profile:
    """Turn the accumulated sums into a :class:`Profile`."""
    n_layers = lm.num_layers
    metrics: dict[str, list[float | None]] = {
        name: _mean_list(sums, name, "n_tokens") for name in residual.BLOCK_METRICS
    }
    metrics["resid_norm"] = _mean_list(sums, "resid_norm", "n_tokens")
    ang = sums.mean("angular_distance", "n_angular_tokens")
    angular = [
        [clean_float(ang[l, n - 1].item()) if l + n <= n_layers else None
         for n in range(1, n_max + 1)]
        for l in range(n_layers)
    ]
    depth: dict[str, Any] = {}
    tokens = {
        "residual": int(sums.get("n_tokens").item()),
        "angular": int(sums.get("n_angular_tokens").item()),
        "lens": 0,
    }
    summary: dict[str, Any] = {}
    if with_lens:
        for name in lens_metrics.LENS_METRICS:
            metrics[name] = _mean_list(sums, name, "n_lens_tokens")
        metrics["lens_ce"] = _mean_list(sums, "lens_ce", "n_ce_tokens")
        hist = sums.get("prediction_depth_hist")
        n = float(hist.sum())
        depth = {
            "histogram": [int(v) for v in hist.tolist()],
            "mean": clean_float(float((hist * torch.arange(n_layers + 1)).sum()) / n)
            if n
            else None,
            "unit": "blocks applied before the top-1 prediction settles (0..L)",
        }
        tokens["lens"] = int(sums.get("n_lens_tokens").item())
        tokens["ce"] = int(sums.get("n_ce_tokens").item())
        summary["loss"] = clean_float(sums.mean("final_ce", "n_ce_tokens").item())
    return Profile(
        model=lm.identity(),
        arch=lm.arch.to_dict(),
        data=data.identity,
        options={**opts.to_dict(), "n_max": n_max},
        tokens=tokens,
        metrics=metrics,
        angular_distance=angular,
        prediction_depth=depth,
        summary=summary,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
