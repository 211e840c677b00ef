"""Which blocks to remove: one selector per method of SPEC "Cutting depth"."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.capture.hooks import block_input, hooks, replace_first
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.perplexity import batch_nll
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar
from depthlens.spans import span_text


@contextlib.contextmanager
def skip_blocks(model: nn.Module, spec: ArchSpec, indices: tuple[int, ...]) -> Iterator[None]:
    """Temporarily make blocks ``indices`` the identity (h_{l+1} := h_l); never copies."""
    blocks = blocks_of(model, spec)

    def on_block(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        return replace_first(out, block_input(args, kwargs))

    with hooks(
        lambda: [blocks[i].register_forward_hook(on_block, with_kwargs=True) for i in indices]
    ):
        yield


def select_span(angular: list[list[float | None]], n: int) -> tuple[int, dict[str, Any]]:
    """Start s ≥ 1 of the span [s, s+n) with the smallest angular_distance[s][n−1]."""
    values = {s: angular[s][n - 1] for s in range(1, len(angular) - n + 1)}
    finite = {s: v for s, v in values.items() if v is not None and math.isfinite(v)}
    if not finite:
        raise DepthlensError(
            f"no span of {n} blocks has a finite angular distance d(h_s, h_s+{n}) for any "
            f"start s in 1..{len(angular) - n} (all are NaN/null: the profile saw no tokens "
            "for them, or the activations overflowed); profile with more text or "
            "--dtype float32, remove fewer blocks, or use --method block-influence"
        )
    best = min(finite, key=lambda s: finite[s])
    ranked = sorted(finite.items(), key=lambda kv: kv[1])[:5]
    return best, {
        "why": f"blocks {span_text(best, n)} have the smallest angular distance "
        f"d(h_{best}, h_{best + n}) = {finite[best]:.4f} among starts s >= 1",
        "angular_distance_by_start": [values[s] for s in sorted(values)],
        "best_starts": [[s, v] for s, v in ranked],
    }


def select_lowest(values: list[float | None], n: int, name: str) -> tuple[tuple[int, ...], dict]:
    """The n blocks with the lowest metric value (need not be contiguous)."""
    order = sorted((v, i) for i, v in enumerate(values) if v is not None)
    chosen = tuple(sorted(i for _, i in order[:n]))
    return chosen, {
        "why": f"the {n} blocks with the lowest {name}",
        name: values,
        "chosen_values": [values[i] for i in chosen],
    }


def select_last(num_layers: int, n: int) -> tuple[tuple[int, ...], dict]:
    """The last n blocks before the final one."""
    chosen = tuple(range(num_layers - 1 - n, num_layers - 1))
    return chosen, {"why": f"baseline: the last {n} blocks before the final block"}


def select_random(num_layers: int, n: int, seed: int) -> tuple[tuple[int, ...], dict]:
    """A seeded random set of n blocks."""
    gen = torch.Generator().manual_seed(seed)
    chosen = tuple(sorted(torch.randperm(num_layers, generator=gen)[:n].tolist()))
    return chosen, {"why": f"baseline: random blocks (seed {seed})", "seed": seed}


def calibration_loss(
    lm: LoadedModel, windows: TokenWindows, skip: tuple[int, ...], batch_size: int
) -> float:
    """Mean next-token NLL on ``windows`` with blocks ``skip`` made identity."""
    total, count = 0.0, 0
    with skip_blocks(lm.model, lm.arch, skip), torch.inference_mode():
        for ids, mask in windows.batches(batch_size):
            s, c = batch_nll(lm.model, ids.to(lm.device), mask.to(lm.device))
            total += s
            count += c
    return total / max(count, 1)


def select_greedy_loss(
    lm: LoadedModel,
    windows: TokenWindows,
    n: int,
    *,
    batch_size: int = 4,
    progress: bool = False,
) -> tuple[tuple[int, ...], dict]:
    """SLEB: n rounds, each removing the block whose removal raises the loss least."""
    removed: list[int] = []
    rounds = []
    base = calibration_loss(lm, windows, (), batch_size)
    bar = progress_bar(sum(lm.num_layers - r for r in range(n)), "greedy-loss", enabled=progress)
    for _ in range(n):
        losses = {}
        for cand in range(lm.num_layers):
            if cand in removed:
                continue
            losses[cand] = calibration_loss(lm, windows, (*removed, cand), batch_size)
            bar.update(1)
        best = min(losses, key=lambda c: losses[c])
        removed.append(best)
        rounds.append(
            {
                "removed": best,
                "loss": losses[best],
                "candidates": [[c, v] for c, v in losses.items()],
            }
        )  # the trace
    bar.close()
    return tuple(sorted(removed)), {
        "why": f"{n} greedy rounds, each removing the block that raises the calibration "
        "loss least (SLEB)",
        "base_loss": base,
        "rounds": rounds,
        "calibration_windows": len(windows),
    }
