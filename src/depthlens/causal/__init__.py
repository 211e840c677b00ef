"""Causal analyses: what skipping a block changes downstream, and how deep each token settles."""

from depthlens.causal.skip import SkipOptions, SkipResult, add_skip_sweep, skip_sweep
from depthlens.causal.think import ThinkOptions, ThinkResult, depth_jsd, think, token_depth

__all__ = [
    "SkipOptions",
    "SkipResult",
    "ThinkOptions",
    "ThinkResult",
    "add_skip_sweep",
    "depth_jsd",
    "skip_sweep",
    "think",
    "token_depth",
]
