"""``depthlens plan --objective acceptance``: the blocks a self-speculation draft skips.

The removed set is grown greedily by top-1 agreement with the full model on the
calibration text, by the same probe and search ``depthlens draft`` uses
(:func:`depthlens.speculate.choose.greedy_skips`), and written as an ordinary
:class:`~depthlens.cut.plan.CutPlan` (no maps: the blocks are simply not run), so that
``generate --draft plan:PLAN.json`` drafts with it and ``prune --plan`` can still cut it.

The objective differs from the loss-aware cut searches: a draft is judged by how often its
top-1 token is the full model's (the per-token acceptance of greedy speculation), not by
KL or perplexity, which weigh the whole distribution.
"""

from __future__ import annotations

from typing import Any

from depthlens.cut.plan import CutPlan, plan_envelope
from depthlens.cut.request import resolve_n
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import cut_savings
from depthlens.models.loading import LoadedModel
from depthlens.results import clean_json
from depthlens.speculate.build import draft_head
from depthlens.speculate.choose import AgreementProbe, greedy_skips

ACCEPTANCE_METHOD = "greedy-acceptance"
ACCEPTANCE_OBJECTIVE = "acceptance"


def plan_by_acceptance(
    lm: LoadedModel,
    windows: TokenWindows,
    n: int | None = None,
    ratio: float | None = None,
    *,
    progress: bool = False,
) -> CutPlan:
    """Remove ``n`` blocks (or ``ratio`` of them), chosen greedily by top-1 agreement.

    ``plan_by_acceptance(lm, windows, n=4)``: the plan's ``selection`` records the
    agreement after each removal and the order the blocks were chosen in.
    """
    n = resolve_n(lm.num_layers, n, ratio)
    probe = AgreementProbe(lm, windows, draft_head(lm, None))
    grown = greedy_skips(probe, n, floor=0.0, progress=progress)
    if len(grown) < n:
        raise DepthlensError(
            f"--objective acceptance could remove only {len(grown)} of the {n} blocks asked: "
            "the rest would leave out a block that transformers needs for its attention mask "
            "(the first of an attention kind); ask for fewer"
        )
    last = grown[-1]
    selection: dict[str, Any] = {
        "why": "greedy: each step leaves out the block whose removal keeps the top-1 "
        "agreement with the full model highest (the acceptance rate of greedy speculation)",
        "objective": ACCEPTANCE_OBJECTIVE,
        "agreement": last.acceptance,
        "agreement_by_n": [c.acceptance for c in grown],
        "order": list(last.skipped),
        "scored_tokens": int(probe.mask.sum()),
    }
    options = {"n": n, "ratio": ratio, "objective": ACCEPTANCE_OBJECTIVE}
    return CutPlan(
        envelope=plan_envelope(lm, windows, options),
        method=ACCEPTANCE_METHOD,
        num_layers=lm.num_layers,
        removed=tuple(sorted(last.skipped)),
        merge_into=None,
        selection=clean_json(selection),
        fit={},
        savings=cut_savings(lm, tuple(sorted(last.skipped)), windows.seq_len),
    )
