"""``depthlens.speculate``: exact speculative decoding with the model's own depth as the draft."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Required, TypedDict, Unpack

import torch

from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope
from depthlens.speculate.build import model_draft, self_draft
from depthlens.speculate.decode import LoopStats, Sampler, speculative_loop
from depthlens.speculate.heads import FullHead
from depthlens.speculate.kinds import draft_kind, parse_draft
from depthlens.speculate.result import SpeculativeResult
from depthlens.speculate.spec import DraftSpec, check_k
from depthlens.speculate.stack import Stack


def eos_ids(lm: LoadedModel) -> set[int]:
    """The ids that end generation (the generation config's, as ``generate`` uses them)."""
    cfg: Any = getattr(lm.model, "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(lm.model, "config", None), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def check_options(max_new_tokens: int, k: int, temperature: float) -> None:
    """Refuse options no model can run with (before any model loads)."""
    check_k(k)
    if max_new_tokens < 1:
        raise DepthlensError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise DepthlensError(f"--temperature must be 0 (greedy) or positive, got {temperature}")


def build_drafter(
    lm: LoadedModel,
    stack: Stack,
    spec: DraftSpec,
    temperature: float,
    vocab_ids: torch.Tensor | None,
    draft_lm: LoadedModel | None,
) -> Any:
    """The drafter of ``spec``: a view of ``lm`` on its own cache, or the cut ``draft_lm``."""
    kind = draft_kind(spec)
    kind.check(spec, lm.num_layers)
    if kind.view is None:
        if draft_lm is None:
            raise DepthlensError(f"--draft {spec.text!r} needs the draft model loaded (draft_lm)")
        return model_draft(lm, draft_lm, spec, temperature, vocab_ids)
    return self_draft(lm, stack, kind.view(lm, spec), spec, temperature, vocab_ids)


class SpeculateKeywords(TypedDict, total=False):
    """The keywords of :func:`speculate` and :func:`run_speculative` (defaults in Decoding)."""

    max_new_tokens: Required[int]
    k: int
    temperature: float
    seed: int
    vocab_ids: torch.Tensor | None
    draft_lm: LoadedModel | None


@dataclass(frozen=True)
class Decoding:
    """How to decode: the keywords of :func:`speculate`, defaults filled in.

    Built with ``Decoding(**keywords)``, so a misspelt keyword is a ``TypeError`` as in a
    plain signature.
    """

    max_new_tokens: int
    k: int = 4  # tokens drafted per verify
    temperature: float = 0.0  # 0: greedy
    seed: int = 0  # of the sampler when temperature > 0
    vocab_ids: torch.Tensor | None = None  # the draft's reduced head (verify keeps the full)
    draft_lm: LoadedModel | None = None  # the loaded cut model of a cut:DIR draft


def run_speculative(
    lm: LoadedModel,
    prompt: list[int],
    draft: str | DraftSpec,
    **keywords: Unpack[SpeculateKeywords],
) -> tuple[DraftSpec, LoopStats]:
    """The loop itself, without the result envelope (what the bench times)."""
    return _run(lm, prompt, draft, Decoding(**keywords))


def _run(
    lm: LoadedModel, prompt: list[int], draft: str | DraftSpec, o: Decoding
) -> tuple[DraftSpec, LoopStats]:
    """:func:`run_speculative` with its keywords resolved (``speculate`` records ``o``)."""
    spec = parse_draft(draft) if isinstance(draft, str) else draft
    check_options(o.max_new_tokens, o.k, o.temperature)
    if not prompt:
        raise DepthlensError("the prompt is empty; pass at least one token")
    stack = Stack(lm.model, lm.arch)
    drafter = build_drafter(lm, stack, spec, o.temperature, o.vocab_ids, o.draft_lm)
    gen = torch.Generator(device=stack.device).manual_seed(o.seed) if o.temperature > 0 else None
    try:
        stats = speculative_loop(
            stack,
            FullHead(lm.model, lm.arch),
            drafter,
            prompt,
            o.max_new_tokens,
            o.k,
            Sampler(o.temperature, gen),
            eos_ids(lm),
        )
    finally:
        drafter.close()
        stack.cache = None
    return spec, stats


def speculate(
    lm: LoadedModel,
    prompt: list[int],
    draft: str | DraftSpec,
    **keywords: Unpack[SpeculateKeywords],
) -> SpeculativeResult:
    """Generate after ``prompt`` (token ids, batch 1) with ``draft``; exact for every draft.

    Greedy (``temperature`` 0) output is token for token ``generate(do_sample=False)``;
    sampled output has the full model's distribution. ``vocab_ids`` gives the draft a
    reduced head (verification keeps the full one); ``draft_lm`` is the loaded cut model of
    a ``cut:DIR`` draft. The keywords and their defaults: :class:`Decoding`.
    """
    o = Decoding(**keywords)
    spec, stats = _run(lm, prompt, draft, o)
    return SpeculativeResult(
        envelope=Envelope(
            kind=SpeculativeResult.KIND,
            model=lm.identity(),
            options={
                "draft": spec.text,
                "k": o.k,
                "temperature": o.temperature,
                "seed": o.seed,
                "max_new_tokens": o.max_new_tokens,
                "draft_vocab": None if o.vocab_ids is None else len(o.vocab_ids),
            },
            tokens={"prompt": len(prompt), "generated": len(stats.tokens)},
        ),
        generated=stats.tokens,
        draft=spec.to_dict(),
        k=o.k,
        temperature=o.temperature,
        acceptance=stats.acceptance,
        mean_accepted_length=stats.mean_accepted_length,
        timing={**stats.summary(), "tokens_per_s": len(stats.tokens) / max(stats.seconds, 1e-9)},
        stats={"drafted": stats.drafted, "accepted": stats.accepted},
    )
