"""Per-layer features of the three model kinds, through scoped hooks on the real modules.

- causal LMs and text encoders: the residual states h_0..h_L of every block
  (:func:`depthlens.capture.hooks.capture_blocks`), either per token or pooled per
  sentence (mean over real tokens, or the last real token);
- vision networks: the output of every layer path of the :class:`VisionSpec`, globally
  average-pooled over space (B, C_l).

Each extractor yields, per batch, one (n, d_l) float32 CPU tensor per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from depthlens.capture.hooks import capture_blocks, first_tensor, forward_kwargs, hooks
from depthlens.data.windows import pad_batch
from depthlens.errors import DepthlensError
from depthlens.registry import Registry

Pool = Literal["mean", "last", "first"]
POOLS: tuple[str, ...] = ("mean", "last", "first")  # labelled sentences
TOKEN_POOLS: tuple[str, ...] = ("token", "last", "mean")  # token mode (windows of a text)
TEXT_MAX_LEN = 128  # tokens per sentence; longer ones are truncated


@dataclass(frozen=True)
class ModelKind:
    """One kind of model the analyses read: how to recognise it and read its features.

    ``extractor_for`` takes the first record (in registration order) whose ``accepts``
    admits the model; a new kind of model is one record.
    """

    name: str  # recorded in results as model_kind
    description: str
    accepts: Callable[[Any], bool]
    inputs: str  # the labelled data it reads: "text" or "image"
    layer_names: Callable[[Any], list[str]]
    # (extractor, a batch of a LabelledSet, pool, include_first) -> per-layer (B, d)
    examples: Callable[[Extractor, Any, Pool, bool], list[torch.Tensor]]
    # position 0 is a BOS the model reads alone (a causal LM): depthlens puts it there
    # itself, leaves it out of means, and refuses --pool first
    sink_first: bool = False


@dataclass
class Extractor:
    """A model of any kind with one way to turn inputs into per-layer features."""

    record: ModelKind
    model: Any  # LoadedModel or VisionModel
    image_size: int | None = None  # vision: resize to this instead of the spec's size

    @property
    def kind(self) -> str:
        """The model kind's name ("causal", "encoder", "vision")."""
        return self.record.name

    @property
    def layer_names(self) -> list[str]:
        """h_0..h_L for text models (L+1), the layer paths for vision networks."""
        return self.record.layer_names(self.model)

    def identity(self) -> dict[str, Any]:
        """The model's identity, as written into results."""
        return dict(self.model.identity())


MODEL_KINDS: Registry[ModelKind] = Registry(
    "model kind",
    columns=(
        ("kind", lambda k: f"`{k.name}`"),
        ("reads", lambda k: k.inputs),
        ("model", lambda k: k.description),
    ),
)


def extractor_for(lm: Any, image_size: int | None = None) -> Extractor:
    """Wrap a model of any registered kind (LoadedModel: causal or encoder; VisionModel)."""
    for kind in MODEL_KINDS.values():
        if kind.accepts(lm):
            return Extractor(kind, lm, image_size)
    raise DepthlensError(
        f"no model kind reads a {type(lm).__name__} (kinds: {', '.join(MODEL_KINDS)}); pass "
        "a model loaded by depthlens"
    )


def _forward_states(lm: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """h_0..h_L for one batch: L+1 tensors (B, T, d) on the model's device."""
    kw = forward_kwargs(lm.model)
    with torch.inference_mode(), capture_blocks(lm.model, lm.arch, attn=False) as trace:
        lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), **kw)
        states = list(trace.states)
    if any(s is None for s in states):
        raise DepthlensError("a block did not run during the forward; check the model's layers")
    return [s for s in states if s is not None]


def token_features(
    ex: Extractor, ids: torch.Tensor, mask: torch.Tensor, include_first: bool
) -> list[torch.Tensor]:
    """Real tokens of one batch of windows: per layer (n_real, d); first position optional."""
    keep = mask.bool().clone()
    if not include_first:
        keep[:, 0] = False  # BOS / attention sink, excluded by default (SPEC)
    states = _forward_states(ex.model, ids, mask)
    sel = keep.to(states[0].device)
    return [s[sel].float().cpu() for s in states]


def _tokenize(ex: Extractor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    tok = ex.model.tokenizer
    if ex.record.sink_first:
        bos = tok.bos_token_id
        rows = tok(texts, add_special_tokens=False, truncation=True, max_length=TEXT_MAX_LEN - 1)[
            "input_ids"
        ]
        rows = [([int(bos)] if bos is not None else []) + list(r) for r in rows]
    else:
        rows = tok(texts, truncation=True, max_length=TEXT_MAX_LEN)["input_ids"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    return pad_batch([list(r) for r in rows], int(pad))  # right padding: position 0 is real


def sentence_features(
    ex: Extractor, texts: list[str], pool: Pool, include_first: bool
) -> list[torch.Tensor]:
    """One vector per sentence and layer: (B, d) per layer."""
    ids, mask = _tokenize(ex, texts)
    states = _forward_states(ex.model, ids, mask)
    keep = mask.bool().clone()
    if not include_first and ex.record.sink_first:
        # the sink position is excluded unless it is the only token
        keep[:, 0] = keep[:, 0] & (mask.sum(1) == 1)
    return pool_states(states, mask, keep, pool)


def pool_states(
    states: list[torch.Tensor], mask: torch.Tensor, keep: torch.Tensor, pool: str
) -> list[torch.Tensor]:
    """Per layer (B, T, d) → (B, d): mean over ``keep``, the last real token, or the first."""
    keep = keep.to(states[0].device)
    last = (mask.sum(1) - 1).clamp_min(0).to(states[0].device)
    rows = torch.arange(mask.shape[0], device=states[0].device)
    out = []
    for s in states:
        if pool == "mean":
            w = keep.unsqueeze(-1).to(s.dtype)  # (B, T, 1)
            v = (s * w).sum(1) / w.sum(1).clamp_min(1.0)
        elif pool == "last":
            v = s[rows, last]
        else:
            v = s[:, 0]
        out.append(v.float().cpu())
    return out


def window_features(
    ex: Extractor, ids: torch.Tensor, mask: torch.Tensor, pool: str, include_first: bool
) -> list[torch.Tensor]:
    """One point per window of a text: its last real token or its mean, (B, d) per layer.

    The sequence-level sampling of the intrinsic-dimension literature (Valeriani et al.
    2023; Cheng et al. 2024): per-token points repeat the same token's state many times
    and let same-token clusters set the local dimension. The mean leaves out the first
    position (attention sink) unless ``include_first``.
    """
    states = _forward_states(ex.model, ids, mask)
    keep = mask.bool().clone()
    if not include_first:
        keep[:, 0] = keep[:, 0] & (mask.sum(1) == 1)
    return pool_states(states, mask, keep, pool)


def image_features(ex: Extractor, images: torch.Tensor) -> list[torch.Tensor]:
    """Globally average-pooled output of every layer path: (B, C_l) per layer."""
    from depthlens.models.vision import preprocess

    vm = ex.model
    x = preprocess(images.float() / 255.0, vm.spec, ex.image_size).to(vm.device)
    got: list[torch.Tensor | None] = [None] * len(vm.spec.layers)

    def make(i: int, path: str) -> Any:
        def on_out(_m: Any, _a: Any, out: Any) -> None:
            o = first_tensor(out)
            got[i] = o.float().mean(dim=tuple(range(2, o.ndim))) if o.ndim > 2 else o.float()

        return vm.model.get_submodule(path).register_forward_hook(on_out)

    with torch.inference_mode(), hooks(lambda: [make(i, p) for i, p in enumerate(vm.spec.layers)]):
        vm.model(x)
    return [g.cpu() for g in got if g is not None]


def example_batches(
    ex: Extractor, ds: Any, batch_size: int, pool: Pool, include_first: bool
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """(per-layer features, labels) for consecutive batches of a LabelledSet."""
    for i in range(0, len(ds), batch_size):
        batch = ds.subset(torch.arange(i, min(i + batch_size, len(ds))))
        yield ex.record.examples(ex, batch, pool, include_first), batch.labels


def _text_layers(lm: Any) -> list[str]:
    return [f"h{l}" for l in range(lm.num_layers + 1)]


def _sentences(ex: Extractor, batch: Any, pool: Pool, include_first: bool) -> list[torch.Tensor]:
    return sentence_features(ex, list(batch.texts), pool, include_first)


def _images(ex: Extractor, batch: Any, pool: Pool, include_first: bool) -> list[torch.Tensor]:
    return image_features(ex, batch.images)


def _is_vision(model: Any) -> bool:
    from depthlens.models.vision import VisionModel

    return isinstance(model, VisionModel)


MODEL_KINDS.register(
    ModelKind(
        "vision",
        "a vision network (VisionModel): each layer path's output, averaged over space",
        accepts=_is_vision,
        inputs="image",
        layer_names=lambda vm: list(vm.spec.layers),
        examples=_images,
    )
)
MODEL_KINDS.register(
    ModelKind(
        "causal",
        "a causal LM: the residual states h_0..h_L; position 0 is the BOS sink",
        accepts=lambda m: bool(getattr(getattr(m, "arch", None), "causal", False)),
        inputs="text",
        layer_names=_text_layers,
        examples=_sentences,
        sink_first=True,
    )
)
MODEL_KINDS.register(
    ModelKind(
        "encoder",
        "a text encoder (bidirectional): the residual states h_0..h_L",
        accepts=lambda m: getattr(m, "arch", None) is not None,
        inputs="text",
        layer_names=_text_layers,
        examples=_sentences,
    )
)
