"""Cut depth without training: plan, preview, apply, save (SPEC "Cutting depth")."""

from depthlens.cut.apply import apply_cut_, remove_blocks_
from depthlens.cut.calibrate import CalibrationOptions
from depthlens.cut.methods import CUT_METHODS, CutMethod, method_names, register_cut_method
from depthlens.cut.plan import CutPlan
from depthlens.cut.plan_io import load_plan, save_plan
from depthlens.cut.planner import plan_cut
from depthlens.cut.request import CutOptions, CutRequest, SelectContext
from depthlens.cut.save import save_pruned
from depthlens.cut.select import skip_blocks

#: The built-in method names (``method_names()`` includes any registered later).
METHODS: tuple[str, ...] = tuple(method_names())

__all__ = [
    "CUT_METHODS",
    "METHODS",
    "CutMethod",
    "CutOptions",
    "CutRequest",
    "SelectContext",
    "method_names",
    "register_cut_method",
    "CalibrationOptions",
    "CutPlan",
    "apply_cut_",
    "plan_cut",
    "load_plan",
    "remove_blocks_",
    "save_plan",
    "save_pruned",
    "skip_blocks",
]
