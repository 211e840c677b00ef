"""Skip sweep: what replacing block l by the identity does to later blocks and the output.

Csordás et al., "Do Language Models Use Their Depth Efficiently?": for every block l,
``skip_out_kl[l]`` = KL(p_L ‖ p_L^skip) and Δ loss, and ``skip_future[l][j]`` =
‖Δ_j^skip − Δ_j‖ / ‖Δ_j‖ for j > l; plus the variants where only block l's attention or
only its MLP is removed. The sweep reuses the clean h_0..h_l and re-runs only blocks
l+1..L-1 (:mod:`depthlens.causal.replay`), about L/2 forwards for all l together.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from depthlens._version import SCHEMA_VERSION, __version__
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
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.io import atomic_write_json
from depthlens.metrics.accumulate import Sums
from depthlens.metrics.lens import FinalDist, Lens, LensKernel, default_chunk
from depthlens.models.loading import LoadedModel
from depthlens.profiling import ProfileOptions, token_masks
from depthlens.profiling.result import check_header, clean_float
from depthlens.progress import progress_bar

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
            raise DepthlensError(f"--lens-kernel must be auto, compiled or eager, got "
                                 f"'{self.lens_kernel}'")

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


class _SkipSums:
    """Float64 sums (and running maxima) of every skip statistic; O(L²) memory."""

    def __init__(self, n_layers: int, variants: tuple[Variant, ...], lens: Lens,
                 kernel: LensKernel, chunk: int | None) -> None:
        self.n, self.lens, self.kernel = n_layers, lens, kernel
        self.chunk = chunk or default_chunk(lens)
        self.sums, self.maxes = Sums(), {}
        for v in variants:
            self.sums.t[f"{v}.out_kl"] = torch.zeros(n_layers, dtype=torch.float64)
            self.sums.t[f"{v}.ce"] = torch.zeros(n_layers, dtype=torch.float64)
            self.sums.t[f"{v}.future"] = torch.zeros(n_layers, n_layers, dtype=torch.float64)
            self.maxes[f"{v}.out_kl"] = torch.zeros(n_layers, dtype=torch.float64)
            self.maxes[f"{v}.future"] = torch.zeros(n_layers, n_layers, dtype=torch.float64)
        for name in ("ce_clean", "n_tokens", "n_ce_tokens"):
            self.sums.t[name] = torch.zeros((), dtype=torch.float64)

    def begin_batch(self, states: list[torch.Tensor], sel: torch.Tensor,
                    next_ids: torch.Tensor) -> None:
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
            self.sums.t["ce_clean"] += ce[has].double().sum()
            self.sums.t["n_ce_tokens"] += float(has.sum())
            self.fins.append((sl, fin, has, safe))
        self.sums.t["n_tokens"] += float(self.sel.sum())

    def add_future(self, v: Variant, l: int, j: int, delta: torch.Tensor) -> None:
        """Add ‖Δ_j^skip − Δ_j‖/‖Δ_j‖ for one later block j (``delta``: (B, T, d))."""
        diff = (delta[self.sel] - self.clean_delta[j]).norm(dim=-1)
        r = (diff / self.clean_norm[j].clamp_min(_TINY)).double()
        self.sums.t[f"{v}.future"][l, j] += r.sum()
        if r.numel():
            m = self.maxes[f"{v}.future"]
            m[l, j] = torch.maximum(m[l, j], r.max().cpu())

    def add_output(self, v: Variant, l: int, h_final: torch.Tensor) -> None:
        """Add KL(p_L ‖ p_L^skip) and the cross-entropy of the skipped model's output."""
        hs = h_final[self.sel]
        for sl, fin, has, safe in self.fins:
            z = self.lens.logits(hs[sl])
            kl, _, _, _, lse = self.kernel(z, fin.p, fin.logp, fin.neg_entropy)
            kl = kl.clamp_min(0.0).double()
            self.sums.t[f"{v}.out_kl"][l] += kl.sum()
            if kl.numel():
                m = self.maxes[f"{v}.out_kl"]
                m[l] = torch.maximum(m[l], kl.max().cpu())
            ce = lse - z.gather(-1, safe).squeeze(-1)
            self.sums.t[f"{v}.ce"][l] += ce[has].double().sum()

    def variant_dict(self, v: Variant) -> dict[str, Any]:
        """The per-variant JSON block (future entries with j ≤ l are null)."""
        s = self.sums
        kl = s.mean(f"{v}.out_kl", "n_tokens")
        dloss = s.mean(f"{v}.ce", "n_ce_tokens") - s.mean("ce_clean", "n_ce_tokens")
        fut = s.mean(f"{v}.future", "n_tokens")
        fmax = self.maxes[f"{v}.future"]

        def tri(t: torch.Tensor) -> list[list[float | None]]:
            return [[clean_float(float(t[l, j])) if j > l else None for j in range(self.n)]
                    for l in range(self.n)]

        return {
            "skip_out_kl_mean": [clean_float(x) for x in kl.tolist()],
            "skip_out_kl_max": [clean_float(x) for x in self.maxes[f"{v}.out_kl"].tolist()],
            "delta_loss": [clean_float(x) for x in dloss.tolist()],
            "skip_future": tri(fut),
            "skip_future_max": tri(fmax),
        }


@dataclass(frozen=True)
class SkipResult:
    """Skip-sweep result of one model on one dataset (SPEC "Causal metrics")."""

    model: dict[str, Any]
    arch: dict[str, Any]
    data: dict[str, Any]
    options: dict[str, Any]
    tokens: dict[str, int]
    loss: float | None  # clean mean next-token loss on the same tokens
    skip_out_kl_mean: list[float | None]
    skip_out_kl_max: list[float | None]
    delta_loss: list[float | None]
    skip_future: list[list[float | None]]  # [l][j], null where j ≤ l
    skip_future_max: list[list[float | None]]
    attn_only: dict[str, Any] | None  # same five fields with only block l's attention removed
    mlp_only: dict[str, Any] | None
    created: str
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = __version__
    schema_version: int = SCHEMA_VERSION
    kind: str = "depthlens.skip"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SkipResult:
        """Inverse of :meth:`to_dict`, refusing other kinds and newer schemas."""
        check_header(d, "skip")
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: Any) -> None:
        """Write the JSON atomically."""
        atomic_write_json(path, self.to_dict())


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


def _batches(data: TokenWindows, bs: int) -> Iterator[torch.Tensor]:
    for start in range(0, data.input_ids.shape[0], bs):
        yield torch.arange(start, min(start + bs, data.input_ids.shape[0]))


def _sweep_batch_reuse(acc: _SkipSums, model: nn.Module, spec: ArchSpec,
                       variants: tuple[Variant, ...], ids: torch.Tensor,
                       am: torch.Tensor, sel: torch.Tensor, nxt: torch.Tensor) -> None:
    """One clean forward, then for each l re-run only the blocks after l."""
    with capture_blocks(model, spec, attn=False) as trace, \
            record_block_calls(model, spec) as calls:
        run_forward(model, ids, am, **forward_kwargs(model))
    states = [s for s in trace.states if s is not None]
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


def _sweep_batch_naive(acc: _SkipSums, model: nn.Module, spec: ArchSpec,
                       variants: tuple[Variant, ...], ids: torch.Tensor,
                       am: torch.Tensor, sel: torch.Tensor, nxt: torch.Tensor) -> None:
    """Reference: one full forward of the whole model per (variant, l)."""
    blocks = blocks_of(model, spec)
    n = len(blocks)
    with capture_blocks(model, spec, attn=False) as trace:
        model(input_ids=ids, attention_mask=am, use_cache=False)
    acc.begin_batch([s for s in trace.states if s is not None], sel, nxt)
    for v in variants:
        for l in range(n):
            ctx = identity_block(blocks[l]) if v == "block" else zero_sublayer(blocks[l], spec, v)
            with ctx, capture_blocks(model, spec, attn=False) as tr:
                model(input_ids=ids, attention_mask=am, use_cache=False)
            st = tr.states
            for j in range(l + 1, n):
                acc.add_future(v, l, j, st[j + 1] - st[j])  # type: ignore[operator]
            acc.add_output(v, l, st[n])  # type: ignore[arg-type]


def skip_sweep(lm: LoadedModel, data: TokenWindows, options: SkipOptions | None = None, *,
               progress: bool = True, naive: bool = False) -> SkipResult:
    """Run the skip sweep of SPEC "Causal metrics" over ``data``, streaming by batch.

    ``naive=True`` recomputes every skipped model with a full forward (L times the cost of
    the default); it exists to test and benchmark the prefix-reusing sweep.
    """
    opts = options or SkipOptions()
    opts.validate()
    lens = _check_supported(lm, opts)
    masks = token_masks(data, ProfileOptions(include_first_token=opts.include_first_token,
                                             lens_tokens=None))
    if int(masks.valid.sum()) == 0:
        raise DepthlensError("no real tokens for the skip sweep; use a longer text or --seq-len")
    kernel = LensKernel(opts.lens_kernel)
    acc = _SkipSums(lm.num_layers, opts.variants, lens, kernel, opts.lens_chunk)
    run = _sweep_batch_naive if naive else _sweep_batch_reuse
    batches = list(_batches(data, opts.batch_size))
    # Progress in tokens (not batches): one batch of the sweep costs ~3L/2 forwards.
    bar = progress_bar(int(data.attention_mask.sum()), "skip sweep", enabled=progress, unit="tok")
    dev = lm.device
    with torch.inference_mode():
        for rows in batches:
            run(acc, lm.model, lm.arch, opts.variants, data.input_ids[rows].to(dev),
                data.attention_mask[rows].to(dev), masks.valid[rows], masks.next_ids[rows])
            bar.update(int(data.attention_mask[rows].sum()))
    bar.close()
    return _finalize(lm, data, opts, acc, kernel)


def _finalize(lm: LoadedModel, data: TokenWindows, opts: SkipOptions, acc: _SkipSums,
              kernel: LensKernel) -> SkipResult:
    block = acc.variant_dict("block")
    sub = {v: acc.variant_dict(v) for v in opts.sublayers}
    return SkipResult(
        model=lm.identity(),
        arch=lm.arch.to_dict(),
        data=data.identity,
        options={**opts.to_dict(), "lens_kernel_used": kernel.used},
        tokens={"skip": int(acc.sums.get("n_tokens")), "ce": int(acc.sums.get("n_ce_tokens"))},
        loss=clean_float(float(acc.sums.mean("ce_clean", "n_ce_tokens"))),
        attn_only=sub.get("attn"),
        mlp_only=sub.get("mlp"),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **block,
    )
