"""Heal a cut model: a short distillation towards the original, merged back into the weights.

Loss per batch (Hinton et al., 2015, "Distilling the knowledge in a neural network"):
KL(p_teacher ‖ p_student) of the next-token distributions, averaged over real tokens, plus
optionally ``mse_weight`` × the normalised squared error ‖h_s − h_t‖² / ‖h_t‖² of the
residual stream right after each merge block (the cut points: the student's state after
kept block i against the teacher's h_e, the end of the run that block i replaces).

What trains (``train``): ``"lora"`` — LoRA adapters (Hu et al., 2021, via ``peft``) on every
linear layer of every block (the family's ``ArchSpec.lora_targets``), merged back
afterwards; ``"merged"`` — only the MLP output projections that absorbed a ReplaceMe map;
``"both"``. Everything else stays frozen, and the result is an ordinary checkpoint of the
same class. A family that cannot be healed so is refused (:func:`heal_refusal`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError, UnsupportedArchitectureError
from depthlens.models.loading import LoadedModel

TRAIN_CHOICES = ("lora", "merged", "both")


@dataclass(frozen=True)
class HealOptions:
    """Choices of the distillation; all of them go into the healed checkpoint's record."""

    steps: int = 50
    lr: float = 2e-4
    train: str = "lora"
    lora_rank: int = 8
    lora_alpha: int = 16
    mse_weight: float = 0.0
    batch_size: int = 2
    seed: int = 0


def check_options(opts: HealOptions) -> None:
    """Refuse options that cannot train (before any model is loaded)."""
    if opts.steps < 1:
        raise DepthlensError(
            f"--steps must be at least 1, got {opts.steps}; healing with no "
            "step would only copy the checkpoint"
        )
    if opts.train not in TRAIN_CHOICES:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("--train", opts.train, list(TRAIN_CHOICES)))
    if opts.lr <= 0 or opts.lora_rank < 1 or opts.batch_size < 1 or opts.mse_weight < 0:
        raise DepthlensError(
            f"--lr must be > 0, --lora-rank and --batch-size >= 1 and --mse-weight >= 0; got "
            f"{opts.lr}, {opts.lora_rank}, {opts.batch_size}, {opts.mse_weight}"
        )


def check_same_tokenizer(student: LoadedModel, teacher: LoadedModel) -> None:
    """The distillation compares distributions token by token: the vocabularies must agree."""
    ts, tt = student.tokenizer, teacher.tokenizer
    vs = int(student.model.config.get_text_config().vocab_size)  # type: ignore[union-attr,operator]
    vt = int(teacher.model.config.get_text_config().vocab_size)  # type: ignore[union-attr,operator]
    same = vs == vt and (ts is None or tt is None or ts.get_vocab() == tt.get_vocab())
    if not same:
        raise DepthlensError(
            f"the teacher {teacher.ref} has a different tokenizer from the cut model "
            f"{student.ref} (vocabulary {vt} vs {vs} tokens, or different token ids); heal "
            "with the model the cut was made from"
        )


def heal_refusal(spec: ArchSpec, train: str = "lora") -> str | None:
    """Why a model of ``spec``'s family cannot be healed with ``train``, or None when it can.

    The distillation matches next-token distributions, so it needs a causal LM; LoRA needs
    every linear of a block named by the spec (adapting only some of them, e.g. the
    attention of a family whose MLP is named differently, would heal half the model and
    still report success).
    """
    if not spec.causal:
        return (
            f"the '{spec.family}' family is an encoder: healing distils next-token "
            "distributions, which it does not predict"
        )
    if train in ("lora", "both") and not (spec.attn_linears and spec.mlp_linears):
        return (
            f"the '{spec.family}' layout does not name the linear layers of both sublayers, "
            "so LoRA would adapt only part of each block; pass --arch with a family from "
            "`depthlens models` whose layout matches, or --train merged"
        )
    return None


def lora_target_modules(model: Any, spec: ArchSpec) -> list[str]:
    """Full module names (from the model root) of every LoRA target in every block."""
    blocks = blocks_of(model, spec)
    names = [f"{spec.blocks}.{i}.{t}" for i in range(len(blocks)) for t in spec.lora_targets]
    missing = [n for n in names if not _has_module(model, n)]
    if missing:
        raise UnsupportedArchitectureError(
            f"the model has no module '{missing[0]}' that the '{spec.family}' layout names "
            "as a LoRA target; pass --arch with a family whose layout matches"
        )
    return names


def _has_module(model: Any, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def cut_points(manifest: dict[str, Any] | None, n_kept: int) -> list[tuple[int, int]]:
    """(student block index, teacher state index) after each merge block of the cut."""
    if not manifest:
        return []
    plan = manifest.get("plan", {})
    removed = set(manifest.get("removed", []))
    n_orig = int(manifest.get("num_layers_original", n_kept + len(removed)))
    kept = [i for i in range(n_orig) if i not in removed]
    merges = list(plan.get("merge_blocks") or [])
    if plan.get("merge_into") is not None:
        merges.append(int(plan["merge_into"]))
    out = []
    for i in merges:
        e = i + 1
        while e in removed:
            e += 1
        out.append((kept.index(i), e))
    return out


def _trainable(lm: LoadedModel, opts: HealOptions, merge_blocks: list[int]) -> Any:
    """Wrap with LoRA and/or unfreeze the merged projections; returns the model to train."""
    model: Any = lm.model
    for p in model.parameters():
        p.requires_grad_(False)
    if opts.train in ("lora", "both"):
        from peft import LoraConfig, get_peft_model
        from transformers.pytorch_utils import Conv1D

        targets = lora_target_modules(model, lm.arch)
        cfg = LoraConfig(
            r=opts.lora_rank,
            lora_alpha=opts.lora_alpha,
            lora_dropout=0.0,
            target_modules=targets,
            # GPT-2's Conv1D stores its weight as (in, out): peft must transpose it.
            fan_in_fan_out=isinstance(model.get_submodule(targets[0]), Conv1D),
            bias="none",
        )
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing` alias: a
            # FutureWarning about their code, not the user's input.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            model = get_peft_model(model, cfg)
    if opts.train in ("merged", "both"):
        if not merge_blocks or lm.arch.mlp_out_proj is None:
            raise DepthlensError(
                "--train merged needs a cut with merged ReplaceMe maps "
                "(replaceme-ls, replaceme-multi, greedy-ls, beam-ls)"
            )
        blocks = blocks_of(lm.model, lm.arch)
        for i in merge_blocks:
            proj = blocks[i].get_submodule(lm.arch.mlp_out_proj)
            base = getattr(proj, "base_layer", proj)  # under peft, the wrapped Linear
            for p in base.parameters():
                p.requires_grad_(True)
    return model


def _loss(
    student: Any,
    teacher: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    points: list[tuple[int, int]],
    mse_weight: float,
) -> tuple[torch.Tensor, dict]:
    want_h = mse_weight > 0 and bool(points)
    with torch.no_grad():
        t_out = teacher(
            input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=want_h
        )
    s_out = student(
        input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=want_h
    )
    keep = mask.bool()
    t_logp = torch.log_softmax(t_out.logits.float()[keep], dim=-1)  # (N, V)
    s_logp = torch.log_softmax(s_out.logits.float()[keep], dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
    parts = {"kl": float(kl.detach())}
    loss = kl
    if want_h:
        mse = torch.stack(
            [
                ((s_out.hidden_states[i + 1][keep] - t_out.hidden_states[e][keep]) ** 2).sum()
                / (t_out.hidden_states[e][keep] ** 2).sum()
                for i, e in points
            ]
        ).mean()
        parts["mse"] = float(mse.detach())
        loss = loss + mse_weight * mse
    return loss, parts


def heal_(
    lm: LoadedModel,
    teacher: LoadedModel,
    windows: TokenWindows,
    opts: HealOptions,
    manifest: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Distil ``teacher`` into ``lm`` in place for ``opts.steps`` steps; merge LoRA back."""
    from depthlens.progress import progress_bar

    check_options(opts)
    why = heal_refusal(lm.arch, opts.train)
    if why is not None:
        raise UnsupportedArchitectureError(f"cannot heal {lm.ref}: {why}")
    check_same_tokenizer(lm, teacher)
    points = cut_points(manifest, lm.num_layers)
    torch.manual_seed(opts.seed)
    model = _trainable(lm, opts, [i for i, _ in points])
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(opts.seed))
    log: list[dict[str, float]] = []
    t0, tokens = time.perf_counter(), 0
    model.train()
    bar = progress_bar(opts.steps, "heal", enabled=progress)
    with torch.enable_grad():
        for step in range(opts.steps):
            k = (step * opts.batch_size) % len(windows)
            rows = order[torch.arange(k, k + opts.batch_size) % len(windows)]
            ids = windows.input_ids[rows].to(lm.device)
            mask = windows.attention_mask[rows].to(lm.device)
            loss, parts = _loss(model, teacher.model, ids, mask, points, opts.mse_weight)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            tokens += int(mask.sum())
            log.append({"step": step + 1, **parts})
            bar.update(1)
    bar.close()
    model.eval()
    if opts.train in ("lora", "both"):
        lm.model = model.merge_and_unload()  # same class as before, LoRA folded into W
    for p in lm.model.parameters():
        p.requires_grad_(False)
    return {
        "options": asdict(opts),
        "trainable_params": sum(p.numel() for p in params),
        "tokens": tokens,
        "seconds": time.perf_counter() - t0,
        "cut_points": points,
        "first_kl": log[0]["kl"],
        "last_kl": log[-1]["kl"],
        "log": log,
    }
