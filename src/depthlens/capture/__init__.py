"""Capturing the residual stream with scoped hooks on the unmodified model."""

from depthlens.capture.hooks import (
    BlockTrace,
    StopForward,
    added_by,
    block_input,
    capture_blocks,
    first_tensor,
    forward_kwargs,
    hooks,
    replace_first,
    run_forward,
)

__all__ = [
    "BlockTrace",
    "StopForward",
    "added_by",
    "block_input",
    "capture_blocks",
    "first_tensor",
    "forward_kwargs",
    "hooks",
    "replace_first",
    "run_forward",
]
