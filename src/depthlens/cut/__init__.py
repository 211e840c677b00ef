"""Cut depth without training: plan, preview, apply, save (SPEC "Cutting depth")."""

from depthlens.cut.apply import apply_cut_, remove_blocks_
from depthlens.cut.calibrate import CalibrationOptions
from depthlens.cut.plan import METHODS, CutPlan
from depthlens.cut.plan_io import load_plan, save_plan
from depthlens.cut.planner import plan_cut
from depthlens.cut.save import save_pruned
from depthlens.cut.select import skip_blocks

__all__ = [
    "METHODS",
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
