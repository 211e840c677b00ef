"""Reasoning score and settling depth of each token.

Reasoning score (Detection and Mitigation of Hallucination in Large Reasoning Models):
R_t = mean over the late blocks j ∈ J of JSD(p_L(t), p(h_{j+1})(t)), read at block j's
output. Settling layer and deep-thinking ratio (Deep-Thinking Ratio): the smallest
number of blocks applied l with JSD(p_L, p(h_l)) ≤ g (the running minimum first reaches g
there), a token is deep when that is ≥ ρ·L, and the ratio is the share of deep tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from depthlens.capture.hooks import capture_blocks, forward_kwargs, run_forward
from depthlens.errors import DepthlensError
from depthlens.metrics.catalog.causal import REASONING_SCORE, SETTLING_LAYER
from depthlens.metrics.catalog.lens import LENS_JSD
from depthlens.metrics.lens import FinalDist, Lens, LensKernel, LensView, Readout, default_chunk
from depthlens.metrics.readout import check_lens_arg, readout_for
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope, Enveloped, clean_json


@dataclass(frozen=True)
class ThinkOptions:
    """Choices of SPEC's reasoning score and settling depth, with their defaults."""

    settle_threshold: float = 0.5  # g
    deep_ratio: float = 0.85  # ρ
    late_blocks: int | None = None  # |J|; None = ⌈L/4⌉ blocks before the final one
    max_new_tokens: int = 32
    lens: str = "logit"  # or "tuned:DIR": settling depth read with a tuned lens

    def validate(self) -> None:
        """Raise a user-facing error for out-of-range values."""
        check_lens_arg(self.lens)
        if not 0.0 <= self.settle_threshold <= math.log(2.0):
            raise DepthlensError(
                f"--settle-threshold must be in [0, ln 2], got {self.settle_threshold}"
            )
        if not 0.0 < self.deep_ratio <= 1.0:
            raise DepthlensError(f"--deep-ratio must be in (0, 1], got {self.deep_ratio}")
        if self.late_blocks is not None and self.late_blocks < 1:
            raise DepthlensError(f"--late-blocks must be ≥ 1, got {self.late_blocks}")
        if self.max_new_tokens < 0:
            raise DepthlensError(f"--max-new-tokens must be ≥ 0, got {self.max_new_tokens}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


def late_blocks(n_layers: int, k: int | None = None) -> list[int]:
    """J: the last ``k`` (default ⌈L/4⌉) blocks before the final block."""
    k = min(k or math.ceil(n_layers / 4), max(n_layers - 1, 1))
    return list(range(max(n_layers - 1 - k, 0), n_layers - 1)) or [n_layers - 1]


def depth_jsd(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    kernel: LensKernel | None = None,
    lens: Readout | None = None,
) -> torch.Tensor:
    """(T, L) JSD(p_L(t), p(h_l)(t)) for l = 1..L blocks applied, one sequence ``(1, T)``.

    ``lens``: the logit lens by default, or a tuned lens (``depthlens.tuned``).
    """
    lens = lens or Lens.of(lm.model, lm.arch)
    ids = input_ids.to(lm.device)
    with capture_blocks(lm.model, lm.arch, attn=False) as trace, torch.inference_mode():
        run_forward(lm.model, ids, torch.ones_like(ids), **forward_kwargs(lm.model))
        states = [s[0] for s in trace.all_states()]  # L+1 of (T, d)
        out = torch.empty(ids.shape[1], len(states) - 1)
        chunk = default_chunk(lens)
        for c0 in range(0, ids.shape[1], chunk):
            sl = slice(c0, c0 + chunk)
            fin = FinalDist.of(lens.logits(states[-1][sl], len(states) - 1))
            for l in range(1, len(states)):
                z = lens.logits(states[l][sl], l)
                view = LensView.of(z, fin, kernel or LensKernel("eager"))
                out[sl, l - 1] = _jsd(view).cpu()
    return out


def _jsd(view: LensView) -> torch.Tensor:
    assert LENS_JSD.per_lens_token is not None  # the lens JSD record is streamed
    return LENS_JSD.per_lens_token(view)


def token_depth(jsd: torch.Tensor, opts: ThinkOptions) -> dict[str, torch.Tensor]:
    """Per-token reasoning score, settling layer (1..L) and deep flag from (T, L) JSDs."""
    n_layers = jsd.shape[1]
    j = torch.tensor(late_blocks(n_layers, opts.late_blocks))
    score = jsd[:, j].mean(dim=1)  # column j = output of block j
    below = jsd <= opts.settle_threshold
    below[:, -1] = True  # JSD(p_L, p_L) = 0: every token settles by depth L
    settling = below.float().argmax(dim=1) + 1  # first depth whose running min ≤ g
    return {
        REASONING_SCORE.name: score,
        SETTLING_LAYER.name: settling,
        "deep": settling >= opts.deep_ratio * n_layers,
    }


@dataclass(frozen=True)
class ThinkResult(Enveloped):
    """Per-token depth of a generated (or given) text."""

    envelope: Envelope
    arch: dict[str, Any]
    prompt: str
    text: str  # the scored text (the generation, or the prompt when nothing was generated)
    per_token: list[dict[str, Any]]  # {token, id, reasoning_score, settling_layer, deep}
    span: dict[str, float | None]
    deep_thinking_ratio: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = "depthlens.think"


def _generate(lm: LoadedModel, ids: torch.Tensor, n: int) -> torch.Tensor:
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model: Any = lm.model  # a transformers PreTrainedModel: has generate()
    ids = ids.to(lm.device)  # the tokenizer gives CPU ids; generate runs where the model is
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=pad,
        )
    return out.cpu()


def _tokens_to_score(
    lm: LoadedModel, prompt: str, opts: ThinkOptions
) -> tuple[torch.Tensor, int, int]:
    """(1, T) ids of the prompt and its continuation, the first scored position, the prompt size."""
    if not prompt.strip():
        raise DepthlensError('the prompt is empty; pass some text, e.g. "The capital of France"')
    if lm.tokenizer is None:
        raise DepthlensError(f"model {lm.ref} has no tokenizer; `think` needs one")
    if not lm.arch.has_lens:
        raise DepthlensError(f"family '{lm.arch.family}' has no logit lens; `think` needs one")
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    n_prompt = ids.shape[1]
    full = _generate(lm, ids, opts.max_new_tokens) if opts.max_new_tokens else ids
    start = n_prompt if full.shape[1] > n_prompt else 1
    if start >= full.shape[1]:
        raise DepthlensError(
            "nothing to score: the prompt is one token and nothing was "
            "generated; use a longer prompt or --max-new-tokens > 0"
        )
    return full, start, n_prompt


def _per_token(
    lm: LoadedModel, full: torch.Tensor, start: int, d: dict[str, torch.Tensor]
) -> list[dict[str, Any]]:
    """One row per scored token, read from the position that predicted it."""
    score, settle = d[REASONING_SCORE.name], d[SETTLING_LAYER.name]
    rows = []
    for t in range(start, full.shape[1]):
        tid = int(full[0, t])
        rows.append(
            {
                "token": lm.tokenizer.decode([tid]),
                "id": tid,
                REASONING_SCORE.name: clean_json(float(score[t - 1])),
                SETTLING_LAYER.name: int(settle[t - 1]),
                "deep": bool(d["deep"][t - 1]),
            }
        )
    return rows


def think(lm: LoadedModel, prompt: str, options: ThinkOptions | None = None) -> ThinkResult:
    """Generate greedily from ``prompt`` and score each generated token's depth.

    A token's numbers are those of the position that predicted it (the distribution the
    greedy step read). With ``max_new_tokens=0`` the prompt's own tokens after the first
    are scored instead.
    """
    opts = options or ThinkOptions()
    opts.validate()
    full, start, n_prompt = _tokens_to_score(lm, prompt, opts)
    readout = readout_for(lm, opts.lens)[0] if opts.lens != "logit" else None
    d = token_depth(depth_jsd(lm, full, lens=readout), opts)
    tokens = _per_token(lm, full, start, d)
    sel = slice(start - 1, full.shape[1] - 1)
    n_layers = lm.num_layers
    env = Envelope(
        kind=ThinkResult.KIND,
        model=lm.identity(),
        data={"prompt": prompt},
        options={
            **opts.to_dict(),
            "late_blocks_used": late_blocks(n_layers, opts.late_blocks),
            "num_layers": n_layers,
            "scored": "generated" if start == n_prompt else "prompt",
        },
        tokens={
            "prompt": n_prompt,
            "generated": int(full.shape[1]) - n_prompt,
            "scored": len(tokens),
        },
    )
    return ThinkResult(
        envelope=env,
        arch=lm.arch.to_dict(),
        prompt=prompt,
        text=lm.tokenizer.decode(full[0, start:].tolist()),
        per_token=tokens,
        span={
            "reasoning_score_mean": clean_json(float(d[REASONING_SCORE.name][sel].mean())),
            "settling_layer_mean": clean_json(float(d[SETTLING_LAYER.name][sel].float().mean())),
        },
        deep_thinking_ratio=clean_json(float(d["deep"][sel].float().mean())),
    )
