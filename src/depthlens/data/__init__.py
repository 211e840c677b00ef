"""Texts to measure and calibrate on, and the token windows cut from them."""

from depthlens.data.masks import next_token_ids, real_positions
from depthlens.data.sources import (
    PACKAGED_NAMES,
    TextSource,
    check_disjoint,
    default_cache_dir,
    list_data,
    load_text,
)
from depthlens.data.windows import TokenWindows, make_windows, pad_batch

__all__ = [
    "PACKAGED_NAMES",
    "TextSource",
    "TokenWindows",
    "check_disjoint",
    "default_cache_dir",
    "list_data",
    "load_text",
    "make_windows",
    "next_token_ids",
    "pad_batch",
    "real_positions",
]
