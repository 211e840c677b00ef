"""Compare models on the same windows in one process: perplexity, speed, ideal speed-up."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.evaluate.speed import SpeedComparison, interleaved_speed
from depthlens.models.loading import LoadedModel
from depthlens.models.manifest import load_manifest
from depthlens.results import Envelope, Enveloped

COMPARE_KIND = "depthlens.compare"


def cut_info(lm: LoadedModel) -> dict[str, Any]:
    """Method and removed blocks of a model cut in this process or loaded from a cut dir."""
    plan = lm.extra.get("depthlens_cut")
    if plan is not None:
        return {"method": plan["method"], "removed": plan["removed"]}
    man = load_manifest(lm.path)
    if man is not None:
        return {"method": man.method, "removed": man.removed}
    return {"method": None, "removed": []}


@dataclass(frozen=True)
class CompareRow:
    """One model of a comparison; ratios are to the first model (the baseline)."""

    label: str
    ref: str
    fingerprint: str
    method: str | None  # the cut method, None for an uncut model
    removed: list[int]  # original indices of the removed blocks
    num_layers: int
    ppl: float
    nll: float
    n_tokens: int
    flops_per_token: float
    ppl_ratio: float
    ideal_speedup: float  # FLOP-count speed-up over the baseline
    ppl_extra: dict[str, float] = field(default_factory=dict)  # JSON: ppl_<name>
    # Speed (None when not timed): median tokens/s, the paired ratio to the baseline, its
    # 95% interval and interquartile range, and what the interval supports.
    prefill_tok_s: float | None = None
    decode_tok_s: float | None = None
    prefill_speedup: float | None = None
    decode_speedup: float | None = None
    prefill_ci95: list[float] | None = None
    decode_ci95: list[float] | None = None
    prefill_iqr: list[float] | None = None
    decode_iqr: list[float] | None = None
    prefill_verdict: str | None = None
    decode_verdict: str | None = None

    @property
    def n_removed(self) -> int:
        """How many blocks were removed."""
        return len(self.removed)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON form: ``n_removed`` added, each extra perplexity as ``ppl_<name>``."""
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name != "ppl_extra":
                d[f.name] = getattr(self, f.name)
            if f.name == "removed":
                d["n_removed"] = self.n_removed
        d.update({f"ppl_{name}": v for name, v in self.ppl_extra.items()})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareRow:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)} - {"ppl_extra"}
        missing = [
            f.name
            for f in fields(cls)
            if f.name in names and f.name not in d and f.default is MISSING
        ]
        if missing:
            raise DepthlensError(f"compare JSON: a model row lacks {', '.join(missing)}")
        extra = {
            k.removeprefix("ppl_"): v
            for k, v in d.items()
            if k.startswith("ppl_") and k not in names
        }
        return cls(**{k: v for k, v in d.items() if k in names}, ppl_extra=extra)


@dataclass(frozen=True)
class CompareResult(Enveloped):
    """Models evaluated on the same windows (``depthlens compare`` / ``eval``)."""

    envelope: Envelope  # the baseline model, the windows, every option, the token count
    extra_data: dict[str, dict[str, Any]]  # identity of each extra text, by name
    models: list[CompareRow]  # the baseline first
    speed: SpeedComparison | None  # every timed run, or None when not timed
    #: ``depthlens eval --mc``: multiple-choice scores by task (absent from the JSON if none)
    mc: dict[str, Any] = field(default_factory=dict)
    KIND: ClassVar[str] = COMPARE_KIND

    def payload(self) -> dict[str, Any]:
        """JSON form of the rows and runs (the envelope's keys stand beside it)."""
        out = {
            "extra_data": self.extra_data,
            "models": [r.to_dict() for r in self.models],
            "speed": None if self.speed is None else self.speed.to_dict(),
        }
        return {**out, "mc": self.mc} if self.mc else out

    @classmethod
    def _from_parts(cls, env: Envelope, d: dict[str, Any]) -> CompareResult:
        if not isinstance(d.get("models"), list):
            raise DepthlensError("compare JSON lacks models")
        return cls(
            envelope=env,
            extra_data=dict(d.get("extra_data") or {}),
            models=[CompareRow.from_dict(m) for m in d["models"]],
            speed=None if d.get("speed") is None else SpeedComparison.from_dict(d["speed"]),
            mc=dict(d.get("mc") or {}),
        )


def compare(
    models: list[tuple[str, LoadedModel]],
    windows: TokenWindows,
    *,
    speed: bool = True,
    speed_options: dict[str, Any] | None = None,
    batch_size: int = 4,
    progress: bool = False,
    extra_data: dict[str, TokenWindows] | None = None,
) -> CompareResult:
    """Evaluate ``models`` (label, model) on the same windows; ratios are to the first.

    ``extra_data`` adds perplexity on more texts (``ppl_<name>`` in each row's JSON).
    """
    if not models:
        raise DepthlensError("compare needs at least one model")
    check_same_tokenizer(models)
    sopts = full_speed_options(speed_options)
    measured = [_measure(lm, windows, batch_size, progress, extra_data or {}) for _, lm in models]
    base = measured[0]
    rows = [
        CompareRow(
            label=label,
            ppl_ratio=m["ppl"] / base["ppl"],
            ideal_speedup=base["flops_per_token"] / m["flops_per_token"],
            **m,
        )
        for (label, _), m in zip(models, measured, strict=True)
    ]
    sp = _speed(models, rows, sopts, progress) if speed else None
    if sp is not None:
        rows = [dataclasses.replace(r, **_speed_fields(sp, i)) for i, r in enumerate(rows)]
    env = Envelope(
        kind=COMPARE_KIND,
        model=models[0][1].identity(),
        data=windows.identity,
        options={
            "speed": speed,
            "speed_options": sopts,
            "batch_size": batch_size,
            "baseline": rows[0].label,
        },
        tokens={"eval": windows.n_tokens},
    )
    return CompareResult(
        envelope=env,
        extra_data={k: w.identity for k, w in (extra_data or {}).items()},
        models=rows,
        speed=sp,
    )


def _measure(
    lm: LoadedModel,
    windows: TokenWindows,
    batch_size: int,
    progress: bool,
    extra_data: dict[str, TokenWindows],
) -> dict[str, Any]:
    """The row fields of one model that do not depend on the others."""
    ppl = evaluate_perplexity(lm, windows, batch_size=batch_size, progress=progress)
    info = cut_info(lm)
    return {
        "ref": lm.ref,
        "fingerprint": lm.identity()["fingerprint"],
        "method": info["method"],
        "removed": info["removed"],
        "num_layers": lm.num_layers,
        "ppl": ppl["ppl"],
        "nll": ppl["nll"],
        "n_tokens": ppl["n_tokens"],
        "flops_per_token": flops_per_token(lm, windows.seq_len)["total"],
        "ppl_extra": {
            name: evaluate_perplexity(lm, w, batch_size=batch_size)["ppl"]
            for name, w in extra_data.items()
        },
    }


SPEED_DEFAULTS = {
    "prompt_len": 256,
    "batch": 1,
    "decode_tokens": 32,
    "rounds": 10,
    "warmup": 2,
    "seed": 0,
    "threads": None,
}


def full_speed_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The full :func:`interleaved_speed` options (``repeats`` is the old name of rounds)."""
    opts = dict(options or {})
    if "repeats" in opts:
        opts.setdefault("rounds", opts.pop("repeats"))
    unknown = set(opts) - set(SPEED_DEFAULTS)
    if unknown:
        raise DepthlensError(
            f"unknown speed options {sorted(unknown)}; known: {sorted(SPEED_DEFAULTS)}"
        )
    return {**SPEED_DEFAULTS, **opts}


def _speed(
    models: list[tuple[str, LoadedModel]],
    rows: list[CompareRow],
    sopts: dict[str, Any],
    progress: bool = False,
) -> SpeedComparison:
    """Time all models interleaved, each ratio against its ideal (FLOP) speed-up."""
    return interleaved_speed(
        [lm for _, lm in models],
        labels=[lab for lab, _ in models],
        ideals=[r.ideal_speedup for r in rows],
        progress=progress,
        **sopts,
    )


def _speed_fields(sp: SpeedComparison, i: int) -> dict[str, Any]:
    """Medians, ratio, interval and verdict of model ``i`` (the baseline's ratio is 1)."""
    ms = sp.models[i]
    out: dict[str, Any] = {"prefill_tok_s": ms.prefill_tok_s, "decode_tok_s": ms.decode_tok_s}
    for k, st in (("prefill", sp.prefill[i]), ("decode", sp.decode[i])):
        out[f"{k}_speedup"] = 1.0 if st is None else st.median
        out[f"{k}_ci95"] = None if st is None else list(st.ci95)
        out[f"{k}_iqr"] = None if st is None else list(st.iqr)
        out[f"{k}_verdict"] = "baseline" if st is None else st.verdict
    return out


def check_same_tokenizer(models: list[tuple[str, LoadedModel]]) -> None:
    """All models read the same token ids: perplexities on one set of windows compare.

    The windows are made with the first model's tokenizer; a model with another vocabulary
    would be scored on ids that mean other text, and its perplexity would look valid.
    """
    base_label, base = models[0]
    want = _vocab(base)
    for label, lm in models[1:]:
        got = _vocab(lm)
        if want is not None and got is not None and got != want:
            raise DepthlensError(
                f"{label} has another tokenizer than {base_label} ({len(got[1])} vs "
                f"{len(want[1])} tokens or different ids); compare models that share one "
                "(a model and its cuts)"
            )


def _vocab(lm: LoadedModel) -> tuple[int, frozenset[tuple[str, int]]] | None:
    tok = lm.tokenizer
    if tok is None or not hasattr(tok, "get_vocab"):
        return None
    vocab = tok.get_vocab()
    return len(vocab), frozenset(vocab.items())


def ratio_text(row: CompareRow, k: str) -> str:
    """'×1.08 [1.02, 1.15] speed-up': the median ratio, its 95% interval and the verdict."""
    med, ci = getattr(row, f"{k}_speedup"), getattr(row, f"{k}_ci95")
    ver = getattr(row, f"{k}_verdict")
    if med is None:
        return "-"
    if ver == "baseline" or not ci:
        return f"×{med:.2f}" + (" (baseline)" if ver == "baseline" else "")
    return f"×{med:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] {ver}"


def compare_table(result: CompareResult) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for printing a compare result (speed: median [95% CI] verdict)."""
    head = [
        "model",
        "method",
        "blocks",
        "ppl",
        "ppl ratio",
        "prefill tok/s",
        "decode tok/s",
        "prefill ×, 95% CI, verdict",
        "decode ×, 95% CI, verdict",
        "ideal ×",
    ]

    def f(v: Any, p: str = ".3f") -> str:
        return "-" if v is None else format(v, p)

    rows = [
        [
            r.label,
            r.method or "-",
            r.num_layers,
            f(r.ppl, ".2f"),
            f(r.ppl_ratio),
            f(r.prefill_tok_s, ".0f"),
            f(r.decode_tok_s, ".1f"),
            ratio_text(r, "prefill"),
            ratio_text(r, "decode"),
            f(r.ideal_speedup),
        ]
        for r in result.models
    ]
    return head, rows
