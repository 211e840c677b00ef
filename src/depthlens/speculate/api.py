"""``depthlens.speculate``: exact speculative decoding with the model's own depth as the draft."""

from __future__ import annotations

from typing import Any

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


def run_speculative(
    lm: LoadedModel,
    prompt: list[int],
    draft: str | DraftSpec,
    *,
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 0.0,
    seed: int = 0,
    vocab_ids: torch.Tensor | None = None,
    draft_lm: LoadedModel | None = None,
) -> tuple[DraftSpec, LoopStats]:
    """The loop itself, without the result envelope (what the bench times)."""
    spec = parse_draft(draft) if isinstance(draft, str) else draft
    check_options(max_new_tokens, k, temperature)
    if not prompt:
        raise DepthlensError("the prompt is empty; pass at least one token")
    stack = Stack(lm.model, lm.arch)
    drafter = build_drafter(lm, stack, spec, temperature, vocab_ids, draft_lm)
    gen = torch.Generator(device=stack.device).manual_seed(seed) if temperature > 0 else None
    try:
        stats = speculative_loop(
            stack,
            FullHead(lm.model, lm.arch),
            drafter,
            prompt,
            max_new_tokens,
            k,
            Sampler(temperature, gen),
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
    *,
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 0.0,
    seed: int = 0,
    vocab_ids: torch.Tensor | None = None,
    draft_lm: LoadedModel | None = None,
) -> SpeculativeResult:
    """Generate after ``prompt`` (token ids, batch 1) with ``draft``; exact for every draft.

    Greedy (``temperature`` 0) output is token for token ``generate(do_sample=False)``;
    sampled output has the full model's distribution. ``vocab_ids`` gives the draft a
    reduced head (verification keeps the full one); ``draft_lm`` is the loaded cut model of
    a ``cut:DIR`` draft.
    """
    spec, stats = run_speculative(
        lm,
        prompt,
        draft,
        max_new_tokens=max_new_tokens,
        k=k,
        temperature=temperature,
        seed=seed,
        vocab_ids=vocab_ids,
        draft_lm=draft_lm,
    )
    return SpeculativeResult(
        envelope=Envelope(
            kind=SpeculativeResult.KIND,
            model=lm.identity(),
            options={
                "draft": spec.text,
                "k": k,
                "temperature": temperature,
                "seed": seed,
                "max_new_tokens": max_new_tokens,
                "draft_vocab": None if vocab_ids is None else len(vocab_ids),
            },
            tokens={"prompt": len(prompt), "generated": len(stats.tokens)},
        ),
        generated=stats.tokens,
        draft=spec.to_dict(),
        k=k,
        temperature=temperature,
        acceptance=stats.acceptance,
        mean_accepted_length=stats.mean_accepted_length,
        timing={**stats.summary(), "tokens_per_s": len(stats.tokens) / max(stats.seconds, 1e-9)},
        stats={"drafted": stats.drafted, "accepted": stats.accepted},
    )
