"""Logit lens vs tuned lens on the same held-out tokens, in one pass.

For every block output h_l (l = 1..L blocks applied) and each lens, every streamed lens
record (:mod:`depthlens.metrics.catalog.lens`: KL to the output, top-1 agreement,
cross-entropy on the next token, …) through the same :class:`LensSums` the profile uses.
One forward per batch serves both lenses; float64 sums, so memory does not grow with the
number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from depthlens.capture.stream import stream_states
from depthlens.data.masks import next_token_ids, real_positions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.metrics.lens import LensKernel, Readout
from depthlens.metrics.lens_sums import LensSums, accumulate_lens
from depthlens.metrics.readout import readout_for
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope, Enveloped, check_same_model


@dataclass(frozen=True)
class LensEval(Enveloped):
    """Per-depth lens metrics of each lens on the same tokens (``depthlens lens eval``)."""

    envelope: Envelope
    lenses: dict[str, dict[str, list[float | None]]]  # {lens: {lens metric: per depth}}
    n_tokens: int
    n_ce_tokens: int
    depth: str = "l = 1..L blocks applied (block outputs)"
    lens_used: dict[str, Any] | None = None
    KIND: ClassVar[str] = "depthlens.lens_eval"


EVAL_KIND = LensEval.KIND


def compare_lenses(
    lm: LoadedModel,
    data: TokenWindows,
    lenses: dict[str, Readout],
    *,
    batch_size: int = 4,
    chunk: int = 64,
    kernel: str = "eager",
    progress: bool = True,
) -> dict[str, LensSums]:
    """{lens: its sums} over the block outputs of the same tokens of ``data``.

    ``kernel``: "eager", or "auto" for the fused torch.compile reductions of the profile.
    """
    fused = LensKernel(kernel)
    if not lenses:
        raise DepthlensError("no lens to evaluate")
    sums = {name: LensSums.zeros(lm.num_layers) for name in lenses}
    valid = real_positions(data.attention_mask, include_first_token=False)
    nxt_all = next_token_ids(data)
    for rows, states in stream_states(
        lm, data, batch_size, valid, label="lens eval", progress=progress
    ):
        nxt = nxt_all[rows][valid[rows]]
        for name, lens in lenses.items():
            # Block outputs h_1..h_L at lens depths 0..L-1 (offset 1), against h_L.
            accumulate_lens(sums[name], lens, states[1:], states[-1], nxt, 1, chunk, fused)
    return sums


def evaluate_lens(
    lm: LoadedModel,
    data: TokenWindows,
    lens: str,
    *,
    batch_size: int = 4,
    kernel: str = "auto",
    progress: bool = True,
) -> LensEval:
    """The logit lens and ``lens`` (``tuned:DIR``) on the same tokens of ``data``."""
    readouts: dict[str, Readout] = {"logit": readout_for(lm, "logit")[0]}
    info: dict[str, Any] = {"kind": "logit"}
    if lens != "logit":
        readouts["tuned"], info = readout_for(lm, lens)
    sums = compare_lenses(
        lm, data, readouts, batch_size=batch_size, kernel=kernel, progress=progress
    )
    first = next(iter(sums.values()))
    n_tokens, n_ce = int(first.n_lens_tokens), int(first.n_ce_tokens)
    env = Envelope(
        kind=LensEval.KIND,
        model=lm.identity(),
        data=data.identity,
        options={"lens": lens, "batch_size": batch_size, "include_first_token": False},
        tokens={"lens": n_tokens},
    )
    return LensEval(
        envelope=env,
        lenses={name: s.means() for name, s in sums.items()},
        n_tokens=n_tokens,
        n_ce_tokens=n_ce,
        lens_used=info,
    )


def load_evals(paths: list[str]) -> list[LensEval]:
    """Read lens-eval JSONs, refusing a mix of models."""
    results = [LensEval.load(p) for p in paths]
    for r in results[1:]:
        check_same_model(results[0].model, r.model, "the lens-eval results")
    return results
