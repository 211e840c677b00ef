"""``plan_cut``: ask a cut method (a record of :mod:`depthlens.cut.methods`) for its plan."""

from __future__ import annotations

from typing import Any

from depthlens.cut.calibrate import _no_proj_message
from depthlens.cut.methods import get_cut_method
from depthlens.cut.plan import CutPlan
from depthlens.cut.request import CutOptions, CutRequest, resolve_n
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel

__all__ = ["CutOptions", "check_method", "plan_cut", "resolve_n"]


def check_method(method: str, lm: LoadedModel) -> None:
    """Refuse an unknown method, or ReplaceMe on a family without an MLP output projection.

    A method with ``maps_optional`` (``units-ls``) cuts such a family without maps (its
    block runs are plain removals).
    """
    m = get_cut_method(method)
    if m.replacement != "none" and not m.maps_optional and lm.arch.mlp_out_proj is None:
        raise DepthlensError(_no_proj_message(lm))


def plan_cut(
    lm: LoadedModel,
    windows: TokenWindows,
    method: str = "replaceme-ls",
    options: CutOptions | None = None,
    *,
    profile: Any = None,
    progress: bool = False,
) -> CutPlan:
    """Plan cutting ``lm`` with ``method`` as ``options`` say (how many blocks, calibration…).

    ``profile``: a :class:`~depthlens.profiling.Profile` of ``lm`` on ``windows`` with
    ``n_max >= n`` and the same token options, reused instead of a new selection pass (the
    benchmark plans many methods from one pass).

    ``plan_cut(lm, windows, "replaceme-ls", CutOptions(n=4))``
    """
    check_method(method, lm)
    req = CutRequest(lm, windows, options or CutOptions(), profile=profile, progress=progress)
    return get_cut_method(method).make_plan(req)
