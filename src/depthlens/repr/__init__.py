"""Representations across depth: anisotropy, intrinsic dimension, CKA, probes, neural collapse.

The metric records live in :mod:`depthlens.metrics.catalog.repr`; the math in
:mod:`geometry`, :mod:`cka`, :mod:`probe` and :mod:`collapse`; feature extraction for
causal LMs, encoders and vision networks in :mod:`features`.
"""

from depthlens.repr.api import (
    analyse_repr,
    load_data,
    load_repr_model,
    similarity,
)
from depthlens.repr.result import ReprResult, SimilarityResult
from depthlens.repr.run import ReprOptions

__all__ = [
    "ReprOptions",
    "ReprResult",
    "SimilarityResult",
    "analyse_repr",
    "load_data",
    "load_repr_model",
    "similarity",
]
