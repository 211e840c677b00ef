"""The model with some blocks not run: a view over the same modules, toggled per forward.

A self-speculative draft is the verified model itself with blocks left out. Nothing is
copied: the view is a second ``ModuleList`` holding the very same block modules (the kept
ones), swapped in for a draft forward and swapped back for the verification forward, with
the per-layer config lists (Gemma's ``layer_types``) sliced alike so each kept block gets
its own attention mask. The blocks keep their ``layer_idx``, so each writes and reads its
own layer of the one shared cache. Hooks that only the draft needs (a plan's linear maps on
an MLP output, a tuned-lens translator before the final norm) are registered once and act
only while :attr:`DepthView.drafting` is set: no re-hooking per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from depthlens.arch.spec import ArchSpec, blocks_of
from depthlens.capture.hooks import first_tensor, replace_first


def _configs(model: nn.Module) -> list[Any]:
    """Every distinct config object of the model and its submodules."""
    seen: dict[int, Any] = {}
    for mod in model.modules():
        c = getattr(mod, "config", None)
        if c is not None and hasattr(c, "to_dict"):
            seen.setdefault(id(c), c)
            text = c.get_text_config()
            seen.setdefault(id(text), text)
    return list(seen.values())


class DepthView:
    """Switch a model between all its blocks and the blocks ``run`` (original indices)."""

    def __init__(self, model: nn.Module, spec: ArchSpec, run: tuple[int, ...]) -> None:
        self.model, self.spec, self.run = model, spec, run
        parent_path, _, self._name = spec.blocks.rpartition(".")
        self._parent = model.get_submodule(parent_path) if parent_path else model
        self._full = blocks_of(model, spec)
        n = len(self._full)
        self._draft = nn.ModuleList([self._full[i] for i in run])
        # (config, key, full list, draft list) for every per-layer config list.
        self._lists: list[tuple[Any, str, Any, Any]] = []
        for c in _configs(model):
            for key in spec.per_layer_config:
                vals = getattr(c, key, None)
                if isinstance(vals, list | tuple) and len(vals) == n:
                    self._lists.append((c, key, vals, type(vals)(vals[i] for i in run)))
        self.drafting = False
        self._handles: list[Any] = []

    def to_draft(self) -> None:
        """Next forwards run only the view's blocks (and the draft-only hooks act)."""
        self._swap(self._draft, 3)
        self.drafting = True

    def to_full(self) -> None:
        """Next forwards run every block, as the model does."""
        self._swap(self._full, 2)
        self.drafting = False

    def _swap(self, blocks: nn.ModuleList, which: int) -> None:
        self._parent._modules[self._name] = blocks  # what nn.Module.__setattr__ does
        for c, key, *lists in self._lists:
            setattr(c, key, lists[which - 2])

    def on_draft_output(
        self, module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        """While drafting, ``module``'s main output becomes ``fn(output)``."""

        def hook(_m: nn.Module, _a: tuple, out: Any) -> Any:
            return replace_first(out, fn(first_tensor(out))) if self.drafting else None

        self._handles.append(module.register_forward_hook(hook))

    def on_draft_input(self, module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """While drafting, ``module``'s first positional input becomes ``fn(input)``."""

        def hook(_m: nn.Module, args: tuple) -> Any:
            if not self.drafting:
                return None
            return (fn(args[0]), *args[1:])

        self._handles.append(module.register_forward_pre_hook(hook))

    def close(self) -> None:
        """Back to the full model, every hook removed (call in ``finally``)."""
        self.to_full()
        for h in self._handles:
            h.remove()
        self._handles.clear()
