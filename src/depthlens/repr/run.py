"""Representation analyses of one model (``repr``) and of two on the same inputs (``similarity``).

Two modes, chosen by the data:

- token mode (a text, e.g. ``wiki-calib``): token states of a causal LM or encoder. CKA
  streams over every real token; geometry uses a seeded sample of ``max_samples`` tokens,
  selected before the forward so memory does not grow with the number of tokens.
- labelled mode (``fashion-mnist``, ``cifar10``, ``text-domain``): one feature vector per
  example (pooled sentence or image). Probes are fitted on the training split and scored
  on the test split and each OOD split; geometry, neural collapse and CKA use the
  training split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.metrics.catalog.repr import (
    ANISOTROPY,
    ANISOTROPY_CENTRED,
    GRIDE,
    INTRINSIC_DIM,
    NC1,
    NC2_EQUIANGULAR,
    NC2_EQUINORM,
    PCA_DIM,
)
from depthlens.repr import collapse as nc
from depthlens.repr import geometry
from depthlens.repr.cka import MIN_BATCH, StreamingCKA
from depthlens.repr.features import (
    POOLS,
    TOKEN_POOLS,
    Extractor,
    example_batches,
    token_features,
    window_features,
)
from depthlens.repr.gride import gride_scaling
from depthlens.repr.probe import ProbeOptions, fit_probe


@dataclass(frozen=True)
class ReprOptions:
    """Every option of the representation analyses (all written into the output)."""

    max_samples: int = 2000  # geometry sample (token mode) / training examples (labelled)
    test_samples: int = 1000  # labelled: held-out examples (the OOD splits corrupt these)
    seed: int = 0
    include_first_token: bool = False
    # Token mode: token (every real token) | last | mean (one point per window);
    # labelled text: mean | last | first. None = token / mean, resolved in resolved().
    pool: str | None = None
    batch_size: int = 4  # windows (token mode) or 64 examples x this / 4 (labelled)
    cka_batch: int = 256  # examples per HSIC minibatch
    twonn_discard: float = 0.1
    pca_threshold: float = 0.9
    probe_l2: float = 1e-3
    probe_max_iter: int = 100
    corruptions: tuple[str, ...] | None = None  # None: all of the data kind's
    probe: bool = False  # require probes: refuse data without labels
    image_size: int | None = None  # vision: input resolution (default the network's, 224)
    exclude_massive: bool = False  # drop rows with norm > massive_k × median before geometry
    massive_k: float = 10.0
    gride_range: int = 64  # GRIDE's largest neighbour rank (scales n1 = 1, 2, …, range/2)

    def validate(self) -> None:
        """One-line errors for impossible values."""
        if self.max_samples < 3:
            raise DepthlensError(f"--max-samples must be at least 3, got {self.max_samples}")
        if self.test_samples < 1:
            raise DepthlensError(f"--test-samples must be at least 1, got {self.test_samples}")
        if self.cka_batch < MIN_BATCH:
            raise DepthlensError(
                f"--cka-batch must be at least {MIN_BATCH} (HSIC_1 divides by "
                f"n(n−3)), got {self.cka_batch}"
            )
        if self.pool is not None and self.pool not in POOLS + TOKEN_POOLS:
            from depthlens.registry import unknown_choice

            raise DepthlensError(unknown_choice("--pool", self.pool, list(POOLS + ("token",))))
        if not self.massive_k > 1.0 or self.gride_range < 2:
            raise DepthlensError(
                f"--massive-k must be > 1 (got {self.massive_k}) and --gride-range ≥ 2 "
                f"(got {self.gride_range})"
            )
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise DepthlensError(f"--image-size must be in 16..1024, got {self.image_size}")
        if self.batch_size < 1:
            raise DepthlensError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0.0 < self.pca_threshold <= 1.0 or not 0.0 <= self.twonn_discard < 1.0:
            raise DepthlensError(
                "--pca-threshold must be in (0, 1] and the TwoNN discard fraction in [0, 1)"
            )

    def resolved(self, tokens: bool) -> ReprOptions:
        """The options with ``pool`` fixed for the mode (token mode: token|last|mean)."""
        pool = self.pool or ("token" if tokens else "mean")
        allowed = TOKEN_POOLS if tokens else POOLS
        if pool not in allowed:
            what = "a text (token mode)" if tokens else "labelled data"
            raise DepthlensError(
                f"--pool {pool} does not apply to {what}; use one of {', '.join(allowed)}"
            )
        return replace(self, pool=pool)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["corruptions"] = list(self.corruptions) if self.corruptions is not None else None
        return d


class CkaBuffer:
    """Collects rows until ``size`` examples, then adds them to the CKA as one minibatch."""

    def __init__(self, cka: StreamingCKA, size: int) -> None:
        self.cka, self.size = cka, size
        self.a: list[list[torch.Tensor]] = []
        self.b: list[list[torch.Tensor]] = []
        self.n = 0

    def add(self, fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor] | None = None) -> None:
        """Add per-layer rows (n, d) of one or two models, flushing full minibatches."""
        start, n = 0, int(fa[0].shape[0])
        while start < n:
            take = min(self.size - self.n, n - start)
            self.a.append([x[start : start + take] for x in fa])
            if fb is not None:
                self.b.append([x[start : start + take] for x in fb])
            self.n += take
            start += take
            if self.n == self.size:
                self.flush()

    def flush(self) -> None:
        """Add what is buffered (dropped and counted when under 4 rows)."""
        if self.n:
            fa = [torch.cat(parts) for parts in zip(*self.a, strict=True)]
            fb = [torch.cat(parts) for parts in zip(*self.b, strict=True)] if self.b else None
            self.cka.update(fa, fb)
        self.a, self.b, self.n = [], [], 0


GEOMETRY_KEYS = (
    ANISOTROPY.name,
    ANISOTROPY_CENTRED.name,
    INTRINSIC_DIM.name,
    "intrinsic_dim_mle",
    PCA_DIM.name,
    "twonn_duplicates",
    "duplicates",
    "massive",
    "n_used",
    GRIDE.name,
    "gride_scale",
)


def geometry_of(sample: Sequence[torch.Tensor], opts: ReprOptions) -> dict[str, list[Any]]:
    """Anisotropy, TwoNN, GRIDE and PCA dimension of each layer's sample (n, d).

    Per layer, ``duplicates`` counts exact repeats of a row and ``massive`` the rows with
    norm > massive_k × the median norm. Repeats are removed before TwoNN and GRIDE
    (a zero nearest-neighbour distance has no ratio); with ``exclude_massive`` the massive
    rows are removed before every geometry figure. ``n_used`` is what remains.
    """
    out: dict[str, list[Any]] = {k: [] for k in GEOMETRY_KEYS}
    for x in sample:
        heavy = geometry.massive_rows(x, opts.massive_k)
        out["massive"].append(int(heavy.sum()))
        out["duplicates"].append(geometry.duplicate_rows(x))
        if opts.exclude_massive:
            x = x[~heavy]
        out[ANISOTROPY.name].append(geometry.anisotropy(x))
        out[ANISOTROPY_CENTRED.name].append(geometry.anisotropy(x, centred=True))
        distinct = geometry.distinct_rows(x)
        out["n_used"].append(int(distinct.shape[0]))
        out["twonn_duplicates"].append(int(x.shape[0] - distinct.shape[0]))
        t = geometry.two_nn(distinct, opts.twonn_discard)
        out[INTRINSIC_DIM.name].append(t.dim)
        out["intrinsic_dim_mle"].append(t.dim_mle)
        scales, _ = gride_scaling(distinct, opts.gride_range)
        out[GRIDE.name].append([s.dim for s in scales])
        out["gride_scale"].append([s.scale for s in scales])
        out[PCA_DIM.name].append(geometry.pca_dim(x, opts.pca_threshold))
    return out


def count_tokens(mask: torch.Tensor, include_first: bool) -> int:
    """Real tokens that enter the statistics."""
    return int(mask.sum()) - (0 if include_first else int(mask[:, 0].sum()))


def token_pass(
    exs: Sequence[Extractor], windows: Any, opts: ReprOptions, progress: Any = None
) -> tuple[list[list[torch.Tensor]], StreamingCKA, int]:
    """One pass over the windows: per-model geometry samples and the streamed CKA.

    ``opts.pool`` token: one point per real token; last / mean: one point per window.
    """
    per_token = opts.pool == "token"
    if per_token:
        n_total = count_tokens(windows.attention_mask, opts.include_first_token)
    else:
        n_total = int(windows.attention_mask.shape[0])
    if n_total < opts.max_samples:
        unit = "tokens" if per_token else f"windows (--pool {opts.pool}: one point per window)"
        raise DepthlensError(
            f"the data has {n_total} {unit}, fewer than --max-samples {opts.max_samples}; "
            "lower --max-samples or raise --max-tokens"
            + ("" if per_token else " (or lower --seq-len for more windows)")
        )
    pick = geometry.sample_indices(n_total, opts.max_samples, opts.seed)
    sizes = [len(ex.layer_names) for ex in exs]
    cka = StreamingCKA(sizes[0], sizes[1] if len(exs) > 1 else None)
    buf = CkaBuffer(cka, opts.cka_batch)
    samples: list[list[list[torch.Tensor]]] = [[[] for _ in range(s)] for s in sizes]
    offset = 0
    for ids, mask in windows.batches(opts.batch_size):
        feats = [
            token_features(ex, ids, mask, opts.include_first_token)
            if per_token
            else window_features(ex, ids, mask, str(opts.pool), opts.include_first_token)
            for ex in exs
        ]
        n = int(feats[0][0].shape[0])
        if len(exs) > 1 and int(feats[1][0].shape[0]) != n:
            raise DepthlensError(
                "the two models see different numbers of tokens; compare "
                "models that share a tokenizer"
            )
        buf.add(feats[0], feats[1] if len(exs) > 1 else None)
        local = pick[(pick >= offset) & (pick < offset + n)] - offset
        for m, f in enumerate(feats):
            for l, x in enumerate(f):
                samples[m][l].append(x[local].clone())
        offset += n
        if progress is not None:
            progress(n)
    buf.flush()
    return [[torch.cat(parts) for parts in per_model] for per_model in samples], cka, n_total


def probe_table(
    train: Sequence[torch.Tensor],
    y_train: torch.Tensor,
    evals: dict[str, tuple[Any, Any]],
    opts: ReprOptions,
) -> dict[str, list[float]]:
    """Per layer: a probe fitted on ``train``, its accuracy on every named eval split."""
    popts = ProbeOptions(opts.probe_l2, opts.probe_max_iter)
    out: dict[str, list[float]] = {"train": [], **{k: [] for k in evals}}
    for l, x in enumerate(train):
        probe = fit_probe(x, y_train, popts)
        out["train"].append(probe.accuracy(x, y_train))
        for k, (feats, y) in evals.items():
            out[k].append(probe.accuracy(feats[l], y))
    return out


def collapse_of(train: Sequence[torch.Tensor], y: torch.Tensor) -> dict[str, list[float]]:
    """NC1 and NC2 per layer on the training features."""
    per_layer = [nc.collapse(x, y) for x in train]
    return {
        NC1.name: [c.nc1 for c in per_layer],
        NC2_EQUINORM.name: [c.equinorm for c in per_layer],
        NC2_EQUIANGULAR.name: [c.equiangular for c in per_layer],
        "nc2_max_angle": [c.max_angle for c in per_layer],
    }


def features_of(
    ex: Extractor, ds: Any, opts: ReprOptions, buf: CkaBuffer | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every example's per-layer features (n, d_l) and labels, optionally streaming CKA."""
    bs = 64 if ds.images is not None else 16
    parts: list[list[torch.Tensor]] = []
    ys = []
    for feats, y in example_batches(ex, ds, bs, opts.pool, opts.include_first_token):  # type: ignore[arg-type]
        parts.append(feats)
        ys.append(y)
        if buf is not None:
            buf.add(feats)
    return [torch.cat(p) for p in zip(*parts, strict=True)], torch.cat(ys)


def best(values: Iterable[float | None]) -> int | None:
    """Index of the largest value (first on ties), None if there is none."""
    vals = [(v, i) for i, v in enumerate(values) if v is not None]
    return max(vals, key=lambda t: (t[0], -t[1]))[1] if vals else None
