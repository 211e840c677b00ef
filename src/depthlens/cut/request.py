"""What a cut method is asked to plan: the options (:class:`CutOptions`) and the request.

These are the types a :class:`~depthlens.cut.methods.CutMethod` reads; they sit below the
planners and the method table so that every planner and every record can import them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from depthlens.cut.calibrate import CalibrationOptions
from depthlens.cut.search import SearchOptions
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel

#: What a selection rule returns: the removed blocks and a JSON record of why.
Selection = tuple[tuple[int, ...], dict[str, Any]]


@dataclass(frozen=True)
class CutOptions:
    """How to cut: how many blocks, the calibration and each method family's knobs.

    ``n`` / ``ratio``: exactly one (``--remove N`` or ``--ratio r``), except that
    ``replaceme-multi`` may take ``blocks`` (the removed set itself) instead.
    ``greedy_windows``: windows greedy-loss scores on; ``search``: greedy-ls / beam-ls;
    ``multi_mode``: "sequential" | "joint" fit of the multi-run maps. ``budget``:
    ``units-ls``'s target (:class:`~depthlens.cut.units.Budget`), given instead of ``n``.
    """

    n: int | None = None
    ratio: float | None = None
    calibration: CalibrationOptions | None = None  # None: the defaults with ``seed``
    last_token_only: bool = False
    greedy_windows: int = 4
    seed: int = 0
    search: SearchOptions | None = None
    blocks: tuple[int, ...] | None = None
    multi_mode: str = "sequential"
    budget: Any = None  # units-ls: a depthlens.cut.units.Budget (instead of n / ratio)
    timing: Any = None  # units-ls with a speed-up budget: measured UnitTime (else measured)
    units: tuple[tuple[str, int], ...] | None = None  # units-ls: the units themselves

    @property
    def cal(self) -> CalibrationOptions:
        """The calibration options in force."""
        return self.calibration or CalibrationOptions(seed=self.seed)

    def replace(self, **changes: Any) -> CutOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class CutRequest:
    """One call of :func:`~depthlens.cut.plan_cut`: what a method's ``plan`` receives.

    ``profile``: a :class:`~depthlens.profiling.Profile` of ``lm`` on ``windows`` with the
    same token options, reused instead of a new selection pass.
    """

    lm: LoadedModel
    windows: TokenWindows
    options: CutOptions = field(default_factory=CutOptions)
    profile: Any = None
    progress: bool = False

    def resolve_n(self) -> int:
        """Blocks to remove, from ``n`` or ``ratio``."""
        return resolve_n(self.lm.num_layers, self.options.n, self.options.ratio)

    def select_context(self, n: int) -> SelectContext:
        """The context a drop method's ``select`` reads, for ``n`` blocks."""
        o = self.options
        return SelectContext(
            self.lm,
            self.windows,
            n,
            seed=o.seed,
            calibration=o.cal,
            last_token_only=o.last_token_only,
            greedy_windows=o.greedy_windows,
            progress=self.progress,
            profile=self.profile,
            options={"n": n, "ratio": o.ratio, "seed": o.seed},
        )


@dataclass
class SelectContext:
    """What a selection rule may read: the model, the calibration text and the options."""

    lm: Any  # LoadedModel
    windows: Any  # TokenWindows
    n: int
    seed: int = 0
    calibration: Any = None  # CalibrationOptions
    last_token_only: bool = False
    greedy_windows: int = 4
    progress: bool = False
    profile: Any = None  # a Profile of lm on windows to reuse, if the caller has one
    options: dict[str, Any] = field(default_factory=dict)  # written into the plan

    @property
    def num_layers(self) -> int:
        """Depth of the model being cut."""
        return int(self.lm.num_layers)

    def selection_profile(self) -> Any:
        """A residual profile with angular distances up to n (the given one if it has them)."""
        from depthlens.profiling import ProfileOptions, profile
        from depthlens.profiling.result import check_profile_matches

        prof = self.profile
        if prof is not None:
            check_profile_matches(prof, self.lm)
        if prof is None or len(prof.angular_distance[0]) < self.n:
            opts = self.calibration
            popts = ProfileOptions(
                lens=False,
                n_max=self.n,
                last_token_only=self.last_token_only,
                include_first_token=opts.include_first_token,
                batch_size=opts.batch_size,
            )
            prof = profile(self.lm, self.windows, popts, progress=self.progress)
            self.profile = prof
        self.options.update(
            last_token_only=self.last_token_only,
            include_first_token=self.calibration.include_first_token,
        )
        return prof


def resolve_n(num_layers: int, n: int | None, ratio: float | None) -> int:
    """Blocks to remove from ``--remove N`` or ``--ratio r`` (rounded, at least 1)."""
    if (n is None) == (ratio is None):
        raise DepthlensError("give exactly one of --remove N or --ratio r")
    if ratio is not None:
        if not 0 < ratio < 1:
            raise DepthlensError(f"--ratio must be strictly between 0 and 1, got {ratio}")
        exact = ratio * num_layers
        n = round(exact)
        if n < 1:
            raise DepthlensError(
                f"--ratio {ratio} of {num_layers} blocks is {exact:.2f} blocks, which rounds to "
                f"0; pass --remove 1 or a --ratio of at least {0.5 / num_layers:.3f}"
            )
    assert n is not None
    if n <= 0:
        raise DepthlensError(f"--remove must be at least 1, got {n}")
    if n >= num_layers - 1:
        raise DepthlensError(
            f"--remove {n} leaves fewer than 2 of the model's {num_layers} blocks; "
            f"remove at most {num_layers - 2}"
        )
    return n


def check_enough_tokens(lm: LoadedModel, windows: TokenWindows) -> None:
    """Fail before any forward when the text cannot determine a d x d map."""
    model: Any = lm.model
    d = int(getattr(model.config.get_text_config(), "hidden_size", 0) or 0)
    if windows.n_tokens - len(windows) < d:
        raise DepthlensError(
            f"too little calibration text: {windows.n_tokens} tokens in {len(windows)} "
            f"window(s) for a {d}x{d} linear map (need at least {d} besides each window's "
            "first token, more for a good fit); raise --max-tokens or use a longer --data"
        )


class PlannedMethod(Protocol):
    """What a planner reads of its method's record (a :class:`~depthlens.cut.methods.CutMethod`).

    The planners sit below the method table (which names them as each record's ``plan``), so
    they type their method by this protocol rather than import the record's class.
    """

    @property
    def name(self) -> str:
        """The method's name (written into the plan)."""

    @property
    def select(self) -> Callable[[SelectContext], Selection] | None:
        """A selection rule's choice of blocks (drop methods)."""

    @property
    def replacement(self) -> Literal["none", "ls", "cos"]:
        """What stands in for the removed blocks."""
