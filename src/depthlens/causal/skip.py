"""Skip sweep: what replacing block l by the identity does to later blocks and the output.

Csordás et al., "Do Language Models Use Their Depth Efficiently?": for every block l,
``skip_out_kl[l]`` = KL(p_L ‖ p_L^skip) and Δ loss, and ``skip_future[l][j]`` =
‖Δ_j^skip − Δ_j‖ / ‖Δ_j‖ for j > l; plus the variants where only block l's attention or
only its MLP is removed. The sweep reuses the clean h_0..h_l and re-runs only blocks
l+1..L-1 (:mod:`depthlens.causal.replay`), about L/2 forwards for all l together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.causal.replay import (
    Sublayer,
    identity_block,
    record_block_calls,
    replay_block,
    sublayer_module,
    zero_sublayer,
)
from depthlens.data.masks import next_token_ids, real_positions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import MAX, Accumulator, host_max, host_sum, ratio, zeros
from depthlens.metrics.catalog.causal import DELTA_LOSS, SKIP_FUTURE
from depthlens.metrics.lens import FinalDist, Lens, LensKernel, default_chunk, kl_to_final
from depthlens.models.loading import LoadedModel
from depthlens.progress import progress_bar
from depthlens.results import Envelope, Enveloped, clean_json

if TYPE_CHECKING:
    from depthlens.profiling.result import Profile

Variant = Literal["block", "attn", "mlp"]
SUBLAYERS: tuple[Sublayer, ...] = ("attn", "mlp")


@dataclass(frozen=True)
class SkipOptions:
    """Choices of the skip sweep; all of them are written into the output."""

    sublayers: tuple[Sublayer, ...] = SUBLAYERS  # attention-/MLP-only variants to add
    batch_size: int = 2
    include_first_token: bool = False
    lens_kernel: Literal["auto", "compiled", "eager"] = "auto"
    lens_chunk: int | None = None

    def validate(self) -> None:
        """Raise a user-facing error for out-of-range values."""
        bad = [s for s in self.sublayers if s not in SUBLAYERS]
        if bad:
            raise DepthlensError(f"unknown skip variant(s) {bad}; choose from attn, mlp")
        if self.batch_size < 1:
            raise DepthlensError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.lens_kernel not in ("auto", "compiled", "eager"):
            raise DepthlensError(
                f"--lens-kernel must be auto, compiled or eager, got '{self.lens_kernel}'"
            )

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The whole-block skip, then the sublayer variants."""
        return ("block", *self.sublayers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        d = asdict(self)
        d["sublayers"] = list(self.sublayers)
        return d


_TINY = torch.finfo(torch.float32).tiny


@dataclass
class VariantSums(Accumulator):
    """Sums and running maxima of one skip variant, per removed block l (and later j)."""

    out_kl: torch.Tensor  # (L,) Σ KL(p_L ‖ p_L^skip)
    ce: torch.Tensor  # (L,) Σ next-token loss of the skipped model
    future: torch.Tensor  # (L, L) Σ ‖Δ_j^skip − Δ_j‖/‖Δ_j‖
    out_kl_max: torch.Tensor = field(metadata=MAX)
    future_max: torch.Tensor = field(metadata=MAX)

    @classmethod
    def zeros(cls, n: int) -> VariantSums:
        """Empty sums for an n-block model."""
        return cls(zeros(n), zeros(n), zeros(n, n), zeros(n), zeros(n, n))


@dataclass
class SkipSums(Accumulator):
    """Everything the skip sweep accumulates; O(L²) memory."""

    block: VariantSums
    attn: VariantSums | None
    mlp: VariantSums | None
    ce_clean: torch.Tensor  # () Σ loss of the intact model
    n_tokens: torch.Tensor  # ()
    n_ce_tokens: torch.Tensor  # ()

    @classmethod
    def zeros(cls, n: int, variants: tuple[Variant, ...]) -> SkipSums:
        """Empty sums for the whole-block skip and the asked-for sublayer variants."""

        def part(v: Variant) -> VariantSums | None:
            return VariantSums.zeros(n) if v in variants else None

        return cls(VariantSums.zeros(n), part("attn"), part("mlp"), zeros(), zeros(), zeros())

    def variant(self, v: Variant) -> VariantSums:
        """The sums of variant ``v`` (one that was asked for)."""
        got = {"block": self.block, "attn": self.attn, "mlp": self.mlp}[v]
        assert got is not None, f"variant {v} was not swept"
        return got


class _SkipSweep:
    """The sweep's per-batch state (clean Δ_j and p_L) and its :class:`SkipSums`."""

    def __init__(
        self,
        n_layers: int,
        variants: tuple[Variant, ...],
        lens: Lens,
        kernel: LensKernel,
        chunk: int | None,
    ) -> None:
        self.n, self.lens, self.kernel = n_layers, lens, kernel
        self.chunk = chunk or default_chunk(lens)
        self.sums = SkipSums.zeros(n_layers, variants)

    def begin_batch(
        self, states: list[torch.Tensor], sel: torch.Tensor, next_ids: torch.Tensor
    ) -> None:
        """Cache the clean Δ_j and p_L of the selected tokens of one batch."""
        self.sel = sel.to(states[0].device)  # (B, T) bool
        picked = [s[self.sel] for s in states]  # (N, d) each
        self.clean_delta = [picked[j + 1] - picked[j] for j in range(self.n)]
        self.clean_norm = [d.norm(dim=-1) for d in self.clean_delta]
        nxt = next_ids[sel]  # (N,)
        self.fins: list[tuple[slice, FinalDist, torch.Tensor, torch.Tensor]] = []
        for c0 in range(0, picked[-1].shape[0], self.chunk):
            sl = slice(c0, c0 + self.chunk)
            fin = FinalDist.of(self.lens.logits(picked[-1][sl]))
            has = nxt[sl].to(fin.p.device) >= 0
            safe = nxt[sl].to(fin.p.device).clamp_min(0).unsqueeze(-1)
            ce = -fin.logp.gather(-1, safe).squeeze(-1)
            self.sums.ce_clean += host_sum(ce[has])
            self.sums.n_ce_tokens += float(has.sum())
            self.fins.append((sl, fin, has, safe))
        self.sums.n_tokens += float(self.sel.sum())

    def add_future(self, v: Variant, l: int, j: int, delta: torch.Tensor) -> None:
        """Add ‖Δ_j^skip − Δ_j‖/‖Δ_j‖ for one later block j (``delta``: (B, T, d))."""
        diff = (delta[self.sel] - self.clean_delta[j]).norm(dim=-1)
        r = diff / self.clean_norm[j].clamp_min(_TINY)  # (N,) on the model's device
        acc = self.sums.variant(v)
        acc.future[l, j] += host_sum(r)
        acc.future_max[l, j] = torch.maximum(acc.future_max[l, j], host_max(r))

    def add_output(self, v: Variant, l: int, h_final: torch.Tensor) -> None:
        """Add KL(p_L ‖ p_L^skip) and the cross-entropy of the skipped model's output."""
        hs = h_final[self.sel]
        acc = self.sums.variant(v)
        for sl, fin, has, safe in self.fins:
            z = self.lens.logits(hs[sl])  # (c, V): the skipped model's output logits
            kl, lse = self.kernel(z, fin.p, fin.logp)  # KL and lse only: all that is kept
            kl = kl.clamp_min(0.0)
            acc.out_kl[l] += host_sum(kl)
            acc.out_kl_max[l] = torch.maximum(acc.out_kl_max[l], host_max(kl))
            ce = lse - z.gather(-1, safe).squeeze(-1)
            acc.ce[l] += host_sum(ce[has])

    def variant_dict(self, v: Variant) -> dict[str, Any]:
        """The per-variant JSON block (future entries with j ≤ l are null)."""
        s, acc = self.sums, self.sums.variant(v)
        kl = ratio(acc.out_kl, s.n_tokens)
        dloss = ratio(acc.ce, s.n_ce_tokens) - ratio(s.ce_clean, s.n_ce_tokens)

        def tri(t: torch.Tensor) -> list[list[float | None]]:
            return [
                [clean_json(float(t[l, j])) if j > l else None for j in range(self.n)]
                for l in range(self.n)
            ]

        return {
            "skip_out_kl_mean": clean_json(kl.tolist()),
            "skip_out_kl_max": clean_json(acc.out_kl_max.tolist()),
            DELTA_LOSS.name: clean_json(dloss.tolist()),
            SKIP_FUTURE.name: tri(ratio(acc.future, s.n_tokens)),
            "skip_future_max": tri(acc.future_max),
        }


@dataclass(frozen=True)
class SkipResult(Enveloped):
    """Skip-sweep result of one model on one dataset (SPEC "Causal metrics")."""

    envelope: Envelope
    arch: dict[str, Any]
    loss: float | None  # clean mean next-token loss on the same tokens
    skip_out_kl_mean: list[float | None]
    skip_out_kl_max: list[float | None]
    delta_loss: list[float | None]
    skip_future: list[list[float | None]]  # [l][j], null where j ≤ l
    skip_future_max: list[list[float | None]]
    attn_only: dict[str, Any] | None  # same five fields with only block l's attention removed
    mlp_only: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = "depthlens.skip"


def _check_supported(lm: LoadedModel, opts: SkipOptions) -> Lens:
    spec = lm.arch
    if not spec.has_lens:
        raise DepthlensError(
            f"the skip sweep needs a causal LM with a final norm and head; family "
            f"'{spec.family}' has none"
        )
    block0 = blocks_of(lm.model, spec)[0]
    for part in opts.sublayers:
        sublayer_module(block0, spec, part)  # raises for post-norm ("stream") families
    return Lens.of(lm.model, spec)


def _sweep_batch_reuse(
    acc: _SkipSweep,
    model: nn.Module,
    spec: ArchSpec,
    variants: tuple[Variant, ...],
    ids: torch.Tensor,
    am: torch.Tensor,
    sel: torch.Tensor,
    nxt: torch.Tensor,
) -> None:
    """One clean forward, then for each l re-run only the blocks after l."""
    with capture_blocks(model, spec, attn=False) as trace, record_block_calls(model, spec) as calls:
        run_forward(model, ids, am, **forward_kwargs(model))
    states = trace.all_states()
    acc.begin_batch(states, sel, nxt)
    blocks = blocks_of(model, spec)
    n = len(blocks)
    for v in variants:
        for l in range(n):
            if v == "block":
                h = states[l]  # h_{l+1} := h_l
            else:
                with zero_sublayer(blocks[l], spec, v):
                    h = replay_block(blocks[l], calls[l], states[l])
            for j in range(l + 1, n):
                out = replay_block(blocks[j], calls[j], h)
                acc.add_future(v, l, j, out - h)
                h = out
            acc.add_output(v, l, h)


def _sweep_batch_naive(
    acc: _SkipSweep,
    model: nn.Module,
    spec: ArchSpec,
    variants: tuple[Variant, ...],
    ids: torch.Tensor,
    am: torch.Tensor,
    sel: torch.Tensor,
    nxt: torch.Tensor,
) -> None:
    """Reference: one full forward of the whole model per (variant, l)."""
    blocks = blocks_of(model, spec)
    n = len(blocks)
    with capture_blocks(model, spec, attn=False) as trace:
        model(input_ids=ids, attention_mask=am, use_cache=False)
    acc.begin_batch(trace.all_states(), sel, nxt)
    for v in variants:
        for l in range(n):
            ctx = identity_block(blocks[l]) if v == "block" else zero_sublayer(blocks[l], spec, v)
            with ctx, capture_blocks(model, spec, attn=False) as tr:
                model(input_ids=ids, attention_mask=am, use_cache=False)
            st = tr.all_states()
            for j in range(l + 1, n):
                acc.add_future(v, l, j, st[j + 1] - st[j])
            acc.add_output(v, l, st[n])


def skip_sweep(
    lm: LoadedModel,
    data: TokenWindows,
    options: SkipOptions | None = None,
    *,
    progress: bool = True,
    naive: bool = False,
) -> SkipResult:
    """Run the skip sweep of SPEC "Causal metrics" over ``data``, streaming by batch.

    ``naive=True`` recomputes every skipped model with a full forward (L times the cost of
    the default); it exists to test and benchmark the prefix-reusing sweep.
    """
    opts = options or SkipOptions()
    opts.validate()
    lens = _check_supported(lm, opts)
    valid = real_positions(data.attention_mask, opts.include_first_token)
    next_ids = next_token_ids(data)
    if int(valid.sum()) == 0:
        raise DepthlensError("no real tokens for the skip sweep; use a longer text or --seq-len")
    kernel = LensKernel(opts.lens_kernel, fn=kl_to_final)
    acc = _SkipSweep(lm.num_layers, opts.variants, lens, kernel, opts.lens_chunk)
    run = _sweep_batch_naive if naive else _sweep_batch_reuse
    batches = data.row_batches(opts.batch_size)
    # Progress in tokens (not batches): one batch of the sweep costs ~3L/2 forwards.
    bar = progress_bar(int(data.attention_mask.sum()), "skip sweep", enabled=progress, unit="tok")
    dev = lm.device
    with torch.inference_mode():
        for rows in batches:
            run(
                acc,
                lm.model,
                lm.arch,
                opts.variants,
                data.input_ids[rows].to(dev),
                data.attention_mask[rows].to(dev),
                valid[rows],
                next_ids[rows],
            )
            bar.update(int(data.attention_mask[rows].sum()))
    bar.close()
    return _finalize(lm, data, opts, acc, kernel)


def add_skip_sweep(
    prof: Profile,
    lm: LoadedModel,
    data: TokenWindows,
    options: SkipOptions | None = None,
    *,
    progress: bool = True,
) -> Profile:
    """``profile --causal``: the skip sweep on the profile's windows, under extra["causal"]."""
    return prof.with_extra("causal", skip_sweep(lm, data, options, progress=progress))


def _finalize(
    lm: LoadedModel, data: TokenWindows, opts: SkipOptions, acc: _SkipSweep, kernel: LensKernel
) -> SkipResult:
    block = acc.variant_dict("block")
    sub = {v: acc.variant_dict(v) for v in opts.sublayers}
    s = acc.sums
    env = Envelope(
        kind=SkipResult.KIND,
        model=lm.identity(),
        data=data.identity,
        options={**opts.to_dict(), "lens_kernel_used": kernel.used},
        tokens={"skip": int(s.n_tokens), "ce": int(s.n_ce_tokens)},
    )
    return SkipResult(
        envelope=env,
        arch=lm.arch.to_dict(),
        loss=clean_json(float(ratio(s.ce_clean, s.n_ce_tokens))),
        attn_only=sub.get("attn"),
        mlp_only=sub.get("mlp"),
        **block,
    )
