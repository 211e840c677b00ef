"""What healing trains, read from the architecture record and the cut.

``lora``: LoRA adapters (Hu et al., 2021, via ``peft``) on the linears of the kept blocks
next to each cut (``neighbours`` on each side); ``blocks``: LoRA on every block's linears;
``maps``: only the MLP output projections that absorbed a least-squares map (ReplaceMe).
The linears are the family's :attr:`~depthlens.arch.layout.ArchSpec.lora_targets`; a family
that cannot take a choice is refused with the reason (:func:`heal_refusal`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from depthlens.arch.layout import ArchSpec, blocks_of
from depthlens.errors import DepthlensError, UnsupportedArchitectureError
from depthlens.heal.options import HealOptions
from depthlens.models.loading import LoadedModel
from depthlens.models.manifest import CutManifest


@dataclass(frozen=True)
class CutSites:
    """Where a cut model was cut, in the cut model's own block indices."""

    removed: tuple[int, ...]  # original indices of the removed blocks
    kept: tuple[int, ...]  # original indices of the blocks that stay, in order
    merge_blocks: tuple[int, ...]  # original indices of blocks that absorbed a map
    # original indices of kept blocks that lost a sublayer (attention or MLP): each is a
    # cut site itself, for cuts finer than a block
    touched: tuple[int, ...] = ()
    # the removed sublayers themselves, (part, original index): their projections stay zero
    sublayers: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, man: CutManifest) -> CutSites:
        """The sites of a cut described by its manifest."""
        kept = tuple(man.kept)
        subs = []
        for text in man.sublayers:  # "attn:3", by the cut model's block index
            part, _, idx = str(text).partition(":")
            subs.append(("attn" if part == "attn" else "mlp", kept[int(idx)]))
        return cls._with_sublayers(tuple(man.removed), kept, tuple(man.merge_blocks), subs)

    @classmethod
    def of_plan(cls, plan: Any) -> CutSites:
        """The sites of a :class:`~depthlens.cut.CutPlan` applied in this process."""
        subs = [(str(k), int(i)) for k, i in getattr(plan, "sublayers", ())]
        maps = tuple(sorted(plan.maps()))
        return cls._with_sublayers(tuple(plan.removed), tuple(plan.kept), maps, subs)

    @classmethod
    def _with_sublayers(
        cls, removed: tuple[int, ...], kept: tuple[int, ...], maps: tuple[int, ...], subs: Any
    ) -> CutSites:
        touched = tuple(sorted({i for _, i in subs}))
        return cls(removed, kept, maps, touched=touched, sublayers=tuple(subs))

    def removed_sublayer(self, part: str, cut_index: int) -> bool:
        """Whether sublayer ``part`` of the cut model's block ``cut_index`` was cut."""
        return (part, self.kept[cut_index]) in self.sublayers

    def neighbours(self, k: int) -> list[int]:
        """Cut-model indices of the kept blocks within ``k`` kept blocks of a removed run."""
        out: set[int] = set()
        for j, i in enumerate(self.kept):
            gap_after = j + 1 < len(self.kept) and self.kept[j + 1] != i + 1
            gap_after = gap_after or (j + 1 == len(self.kept) and i + 1 in self.removed)
            if gap_after:  # a removed run sits between kept j and kept j + 1
                out.update(range(max(0, j - k + 1), min(len(self.kept), j + k + 1)))
        if self.removed and min(self.removed) == 0:  # a cut at the very start
            out.update(range(min(k, len(self.kept))))
        for i in self.touched:  # the block itself, and k - 1 more on each side
            j = self.kept.index(i)
            out.update(range(max(0, j - k + 1), min(len(self.kept), j + k)))
        return sorted(out)

    def cut_points(self) -> list[tuple[int, int]]:
        """(cut-model block, original stream index) after each merge block's removed run."""
        gone = set(self.removed)
        points = []
        for i in self.merge_blocks:
            e = i + 1
            while e in gone:
                e += 1
            points.append((self.kept.index(i), e))
        return points


def heal_refusal(spec: ArchSpec, train: str = "lora") -> str | None:
    """Why a model of family ``spec`` cannot be healed with ``--train train``, or None.

    LoRA needs the linears of both sublayers named: adapting only some of them (the
    attention of a family whose MLP is named differently) would heal half of each block
    and still report success.
    """
    if not spec.has_lens:
        return (
            f"family '{spec.family}' is not a causal LM with a head: healing distils the "
            "next-token distributions of the original, which it has none of"
        )
    if train in ("lora", "blocks") and not (spec.attn_linears and spec.mlp_linears):
        return (
            f"family '{spec.family}' does not name the linear layers of both sublayers "
            "(its ArchSpec's attn_linears/mlp_linears), so LoRA would adapt only part of each "
            "block; pass --arch with a family whose layout matches, or --train maps"
        )
    if train == "maps" and spec.mlp_out_proj is None:
        return (
            f"family '{spec.family}' has no MLP output projection that can absorb a map "
            f"({spec.notes or 'ReplaceMe unsupported'}); pass --train lora"
        )
    return None


def check_healable(lm: LoadedModel, train: str) -> None:
    """Refuse, with the reason, a model whose family cannot be healed this way."""
    why = heal_refusal(lm.arch, train)
    if why:
        raise UnsupportedArchitectureError(f"cannot heal {lm.ref}: {why}")


def target_modules(lm: LoadedModel, opts: HealOptions, sites: CutSites) -> list[str]:
    """Full module names of the linears that get LoRA (``lora`` / ``blocks``)."""
    n = lm.num_layers
    idx = sites.neighbours(opts.neighbours) if opts.train == "lora" else list(range(n))
    if not idx:
        raise DepthlensError(
            "--train lora trains the blocks next to each cut, but the cut records no "
            "removed block or sublayer; pass --train blocks"
        )
    spec = lm.arch
    # a removed sublayer's linears stay out: LoRA there would revive what the cut removed
    return [
        f"{spec.blocks}.{i}.{lin}"
        for i in idx
        for part, lins in (("attn", spec.attn_linears), ("mlp", spec.mlp_linears))
        if not (sites is not None and sites.removed_sublayer(part, i))
        for lin in lins
    ]


def make_trainable(lm: LoadedModel, opts: HealOptions, sites: CutSites) -> Any:
    """Freeze ``lm``, then wrap it with LoRA or unfreeze the maps; the model to train."""
    model: Any = lm.model
    for p in model.parameters():
        p.requires_grad_(False)
    if opts.train in ("lora", "blocks"):
        from peft import LoraConfig, get_peft_model

        names = target_modules(lm, opts, sites)
        # GPT-2's Conv1D stores its weight as (in, out): peft must know to transpose
        conv1d = type(model.get_submodule(names[0])).__name__ == "Conv1D"
        cfg = LoraConfig(
            r=opts.lora_rank,
            lora_alpha=opts.lora_alpha,
            lora_dropout=0.0,
            target_modules=names,
            bias="none",
            fan_in_fan_out=conv1d,
        )
        torch.manual_seed(opts.seed)  # LoRA's A init: the same adapters on every rerun
        with warnings.catch_warnings():  # peft asks transformers a deprecated question
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            return get_peft_model(model, cfg)
    if not sites.merge_blocks:
        raise DepthlensError(
            "--train maps trains the linear maps a cut merged, but this cut merged none "
            "(use a least-squares method: replaceme-ls, replaceme-multi, greedy-ls, beam-ls); "
            "pass --train lora"
        )
    blocks = blocks_of(lm.model, lm.arch)
    for i in sites.merge_blocks:
        proj = blocks[sites.kept.index(i)].get_submodule(str(lm.arch.mlp_out_proj))
        for p in proj.parameters():
            p.requires_grad_(True)
    return model


def merge_back(lm: LoadedModel, model: Any, opts: HealOptions) -> None:
    """Fold LoRA into the weights (same class as before) and freeze everything."""
    if opts.train in ("lora", "blocks"):
        lm.model = model.merge_and_unload()
    for p in lm.model.parameters():
        p.requires_grad_(False)


def rezero_cut_sublayers_(lm: LoadedModel, sites: CutSites | None) -> None:
    """Zero again the output projections of the cut's removed sublayers, after healing.

    LoRA never targets them, but ``--train maps`` may train an MLP output projection the
    cut zeroed; the healed checkpoint must keep the cut's exact zeroed form.
    """
    from depthlens.arch.removed import Part, is_removed, module_path, zero_sublayer_

    if sites is None or not sites.sublayers:
        return
    blocks = blocks_of(lm.model, lm.arch)
    for part, orig in sites.sublayers:
        block = blocks[sites.kept.index(orig)]
        mode: Part = "attn" if part == "attn" else "mlp"
        if not is_removed(block.get_submodule(module_path(lm.arch, mode))):
            zero_sublayer_(block, lm.arch, mode)
