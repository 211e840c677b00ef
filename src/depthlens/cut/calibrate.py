"""ReplaceMe calibration: streamed float64 sums A = ΣMᵀM, B = ΣMᵀZ and the fit of T.

Notation of SPEC "Cutting depth": i = s − 1 is the last kept block before the span
[s, s + n); M is what block i's MLP adds to the stream (its output before the residual
add, times the branch multiplier of the family's wiring: Granite), Y = h_{i+1} − M, and the
target is Z = h_{s+n} − Y. The forward stops after block s + n − 1, padding is excluded
(the first position is kept by default, see :class:`CalibrationOptions`), and memory is
O(d²) whatever the token count.
Every ``holdout_every``-th window is held back to measure the fit: with C = Σ‖Z‖²,
‖MT − Z‖² = tr(TᵀAT) − 2 tr(TᵀB) + C, so no second pass is needed. The held-back sums
keep ordinary tokens and each window's first position apart: the first position (BOS /
attention sink) has a far larger ‖Z‖ and, mixed in, would make the fit look about 20×
better than it is on ordinary tokens (docs/FIRST_POSITION.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from depthlens.capture.hooks import added_by, capture_blocks, forward_kwargs, hooks, run_forward
from depthlens.data.masks import real_positions
from depthlens.data.windows import TokenWindows
from depthlens.dist import rank_world
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import Accumulator, host, host_sum, widen, zeros
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar
from depthlens.spans import span_text


@dataclass(frozen=True)
class CalibrationOptions:
    """Choices of the ReplaceMe fit; all of them go into the plan."""

    include_first_token: bool = False  # selection statistics (angular distance, influence)
    # The fit keeps the first position: T acts on every position, BOS / attention sink
    # included. Fitted on few tokens without it, T sends the sink's massive M astray and
    # ruins the model: SmolLM2-135M, blocks 12-15, 4096 calibration tokens (8 windows):
    # wiki ppl 2.1e6 without it vs 22 with it; at 16384 tokens 25.0 vs 21.1
    # (bench/first_position.py, docs/FIRST_POSITION.md).
    fit_include_first_token: bool = True
    holdout_every: int = 10  # every k-th window is held back for the fit quality; 0 = none
    ridge: float = 0.0  # α in (A + αI) T = B
    batch_size: int = 4
    max_samples: int = 8192  # rows of (M, Z) kept for replaceme-cos
    cos_epochs: int = 10
    cos_lr: float = 1e-4
    cos_batch: int = 1024
    seed: int = 0


@dataclass
class GramSums(Accumulator):
    """A = ΣMᵀM, B = ΣMᵀZ, C = Σ‖Z‖² and the token count n, all float64."""

    A: torch.Tensor  # (d, d)
    B: torch.Tensor  # (d, d)
    C: torch.Tensor  # ()
    n: torch.Tensor  # ()

    @classmethod
    def zeros(cls, d: int) -> GramSums:
        """Empty sums for a d x d map."""
        return cls(zeros(d, d), zeros(d, d), zeros(), zeros())

    def add(self, m: torch.Tensor, z: torch.Tensor) -> None:
        """Add rows (N, d) of M and Z (any device): d×d products there, sums on the CPU."""
        m, z = widen(m), widen(z)
        self.A += host(m.T @ m)
        self.B += host(m.T @ z)
        self.C += host_sum(z * z)
        self.n += m.shape[0]


@dataclass
class SpanSums(Accumulator):
    """The sums of the fit windows and of the held-back windows.

    ``held`` has the held-back windows' ordinary tokens, ``held_first`` their first
    positions (whatever ``fit_include_first_token`` says: the fit quality reports both).
    """

    fit: GramSums
    held: GramSums
    held_first: GramSums


def holdout_rows(n_windows: int, every: int) -> torch.Tensor:
    """(W,) bool: windows held back from the fit (index % every == every − 1)."""
    held = torch.zeros(n_windows, dtype=torch.bool)
    if every > 0 and n_windows >= 2:
        held[every - 1 :: every] = True
        if bool(held.all()):
            held[:] = False
    return held


def stream_span_sums(
    lm: LoadedModel,
    windows: TokenWindows,
    start: int,
    n: int,
    opts: CalibrationOptions,
    *,
    progress: bool = False,
    sample_cap: int = 0,
) -> tuple[SpanSums, tuple[torch.Tensor, torch.Tensor] | None]:
    """One stopped-early pass: float64 sums for fit and held-out windows (all-reduced).

    Returns the sums of the fit and held-out windows and, when ``sample_cap`` > 0, the
    first ``sample_cap`` fit rows of (M, Z) for replaceme-cos.
    """
    spec = lm.arch
    model: Any = lm.model
    _check_span(lm, start, n)
    i = start - 1
    block_i = model.get_submodule(spec.blocks)[i]
    mlp = block_i.get_submodule(spec.mlp)
    got: dict[str, torch.Tensor] = {}

    def on_mlp(_m: torch.nn.Module, _a: tuple, out: Any) -> None:
        got["m"] = added_by(spec, out)  # M: what the MLP adds (T merges linearly into it)

    masks = _part_masks(windows, opts)
    d = int(model.config.get_text_config().hidden_size)
    sums = SpanSums(GramSums.zeros(d), GramSums.zeros(d), GramSums.zeros(d))
    samples = _Samples(sample_cap)
    rank, world = rank_world()
    fkw = forward_kwargs(model)
    batches = windows.row_batches(opts.batch_size, rank, world)
    bar = progress_bar(len(batches), "calibrate", enabled=progress and rank == 0)
    with (
        capture_blocks(model, spec, attn=False, stop_after=start + n - 1) as trace,
        hooks(lambda: [mlp.register_forward_hook(on_mlp)]),
        torch.inference_mode(),
    ):
        for rows in batches:
            trace.clear()
            run_forward(
                model,
                windows.input_ids[rows].to(lm.device),
                windows.attention_mask[rows].to(lm.device),
                **fkw,
            )
            h_i1, h_end = trace.states[start], trace.states[start + n]
            if h_i1 is None or h_end is None or "m" not in got:
                raise DepthlensError("the calibration forward did not reach the span's end")
            m = got.pop("m")
            _add_batch(sums, samples, masks, rows, m, h_end - (h_i1 - m))
            trace.clear()
            bar.update(1)
    bar.close()
    sums.all_reduce()
    _check_enough_fit_tokens(sums, d)
    return sums, samples.result()


def _add_batch(
    sums: SpanSums,
    samples: _Samples,
    masks: tuple[torch.Tensor, ...],
    rows: Any,
    m: torch.Tensor,
    z: torch.Tensor,
) -> None:
    """Route one batch's (M, Z) rows to the fit / held-out / held-out-first sums.

    ``z`` is Z = h_{s+n} − Y, (B, T, d); only the fit rows feed the replaceme-cos sample.
    """
    for part, mask in zip((sums.fit, sums.held, sums.held_first), masks, strict=True):
        sel = mask[rows]  # (B, T)
        mm, zz = m[sel.to(m.device)], z[sel.to(z.device)]  # (N, d), model device
        part.add(mm, zz)
        if part is sums.fit:
            samples.add(mm, zz)


def _check_enough_fit_tokens(sums: SpanSums, d: int) -> None:
    # A d x d least-squares map is underdetermined with fewer than d fit rows.
    if float(sums.fit.n) < d:
        raise DepthlensError(
            f"too little calibration text: {int(sums.fit.n)} fit tokens for a "
            f"{d}x{d} linear map (need at least {d}); raise --max-tokens or use "
            "a longer --data"
        )


def _part_masks(windows: TokenWindows, opts: CalibrationOptions) -> tuple[torch.Tensor, ...]:
    """(W, T) masks: fit tokens, held-back ordinary tokens, held-back first positions.

    The held-back first positions are reported apart, whatever ``fit_include_first_token``
    says.
    """
    rest = real_positions(windows.attention_mask, False)
    first = windows.attention_mask.bool() & ~rest  # each window's first real position
    held = holdout_rows(len(windows), opts.holdout_every)[:, None]
    fit = real_positions(windows.attention_mask, opts.fit_include_first_token) & ~held
    return fit, rest & held, first & held


def _check_span(lm: LoadedModel, start: int, n: int) -> None:
    """Refuse a family without an MLP projection or a span outside blocks 1..L−1."""
    if lm.arch.mlp_out_proj is None:
        raise DepthlensError(_no_proj_message(lm))
    if start < 1 or n < 1 or start + n > lm.num_layers:
        raise DepthlensError(
            f"span {span_text(start, n)} is not inside blocks {span_text(1, lm.num_layers - 1)}"
        )


@dataclass
class _Samples:
    """The first ``cap`` fit rows of (M, Z), kept on the CPU in float32 for replaceme-cos."""

    cap: int
    m: list[torch.Tensor] = field(default_factory=list)
    z: list[torch.Tensor] = field(default_factory=list)
    n: int = 0

    def add(self, m: torch.Tensor, z: torch.Tensor) -> None:
        """Keep rows of ``m``, ``z`` (N, d) until ``cap`` rows are kept."""
        take = min(self.cap - self.n, m.shape[0])
        if take > 0:
            self.m.append(m[:take].to("cpu", torch.float32))
            self.z.append(z[:take].to("cpu", torch.float32))
            self.n += take

    def result(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(M, Z) rows, or None when none were kept."""
        return (torch.cat(self.m), torch.cat(self.z)) if self.m else None


def _no_proj_message(lm: LoadedModel) -> str:
    return (
        f"the replaceme methods need a plain MLP output projection to merge T into, and the "
        f"'{lm.arch.family}' family has none ({lm.arch.notes or 'no mlp_out_proj'}); use "
        "--method angular (same span, plain removal) or block-influence"
    )


def solve_ls(a: torch.Tensor, b: torch.Tensor, ridge: float = 0.0) -> tuple[torch.Tensor, float]:
    """Solve (A + αI) T = B by Cholesky; fall back to a small α if A is singular.

    Returns (T, α used), T in float64.
    """
    d = a.shape[0]
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    alpha = float(ridge)
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(a + alpha * eye)
        if int(info) == 0:
            return torch.cholesky_solve(b, chol), alpha
        alpha = max(alpha * 10, 1e-8 * float(torch.trace(a)) / d + 1e-12)
    raise DepthlensError(
        "the calibration matrix A is singular even with a ridge; use more calibration tokens"
    )


def relative_residual(t: torch.Tensor, sums: GramSums) -> float | None:
    """‖MT − Z‖ / ‖Z‖ from the sums: (tr(TᵀAT) − 2tr(TᵀB) + C) / C, square-rooted."""
    c = float(sums.C)
    if float(sums.n) == 0 or c <= 0:
        return None
    a, b = sums.A, sums.B
    sq = float((t * (a @ t)).sum() - 2 * (t * b).sum()) + c
    return max(sq, 0.0) ** 0.5 / c**0.5


def fit_cosine(
    m: torch.Tensor, z: torch.Tensor, opts: CalibrationOptions
) -> tuple[torch.Tensor, dict[str, Any]]:
    """T minimising Σ_t (1 − cos(M_t T, Z_t)) by Adam from T = I (ReplaceMe, cosine)."""
    d = m.shape[1]
    gen = torch.Generator().manual_seed(opts.seed)
    t = torch.eye(d, dtype=torch.float32, requires_grad=True)
    optim = torch.optim.Adam([t], lr=opts.cos_lr)
    steps = 0
    loss_val = float("nan")
    with torch.enable_grad():
        for _ in range(opts.cos_epochs):
            order = torch.randperm(m.shape[0], generator=gen)
            for k in range(0, m.shape[0], opts.cos_batch):
                rows = order[k : k + opts.cos_batch]
                pred = m[rows] @ t  # (b, d)
                loss = (1 - torch.nn.functional.cosine_similarity(pred, z[rows], dim=-1)).mean()
                optim.zero_grad()
                loss.backward()
                optim.step()
                steps += 1
                loss_val = float(loss.detach())
    with torch.no_grad():
        final = (1 - torch.nn.functional.cosine_similarity(m @ t, z, dim=-1)).mean()
        start = (1 - torch.nn.functional.cosine_similarity(m, z, dim=-1)).mean()
    info = {
        "steps": steps,
        "lr": opts.cos_lr,
        "epochs": opts.cos_epochs,
        "batch": opts.cos_batch,
        "n_samples": int(m.shape[0]),
        "cos_loss_identity": float(start),
        "cos_loss_fit": float(final),
        "last_batch_loss": loss_val,
    }
    return t.detach().double(), info
