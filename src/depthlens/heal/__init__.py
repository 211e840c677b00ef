"""Healing after a cut: distillation towards the original model (``depthlens heal``).

A token budget streamed from any text (:mod:`~depthlens.heal.stream`), a cosine schedule, a
held-out curve with early stopping and resumable state (:mod:`~depthlens.heal.loop`), LoRA
on the blocks next to each cut, on every block, or only the merged maps
(:mod:`~depthlens.heal.targets`); the result is an ordinary checkpoint and a typed record
(:class:`~depthlens.heal.result.HealResult`).
"""

from __future__ import annotations

from depthlens.heal.loop import heal_
from depthlens.heal.options import TRAIN_CHOICES, HealOptions
from depthlens.heal.result import HealResult
from depthlens.heal.run import heal_checkpoint, save_healed
from depthlens.heal.stream import Cursor, FixedStream, TextStream
from depthlens.heal.targets import CutSites, heal_refusal

__all__ = [
    "TRAIN_CHOICES",
    "CutSites",
    "Cursor",
    "FixedStream",
    "HealOptions",
    "HealResult",
    "TextStream",
    "heal_",
    "heal_checkpoint",
    "heal_refusal",
    "save_healed",
]
