"""Compare models on the same windows in one process: perplexity, speed, ideal speed-up."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from depthlens._version import SCHEMA_VERSION, __version__
from depthlens.cut.save import read_manifest
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.evaluate.speed import measure_speed
from depthlens.models.loading import LoadedModel

COMPARE_KIND = "depthlens.compare"


def cut_info(lm: LoadedModel) -> dict[str, Any]:
    """Method and removed blocks of a model cut in this process or loaded from a cut dir."""
    plan = lm.extra.get("depthlens_cut")
    if plan is not None:
        return {"method": plan["method"], "removed": plan["removed"]}
    man = read_manifest(lm.path)
    if man is not None:
        return {"method": man["method"], "removed": man["removed"]}
    return {"method": None, "removed": []}


def compare(
    models: list[tuple[str, LoadedModel]],
    windows: TokenWindows,
    *,
    speed: bool = True,
    speed_options: dict[str, Any] | None = None,
    batch_size: int = 4,
    progress: bool = False,
    extra_data: dict[str, TokenWindows] | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` (label, model) on the same windows; ratios are to the first.

    Returns the JSON-able ``depthlens.compare`` result. ``extra_data`` adds perplexity on
    more texts under ``ppl_<name>`` per model.
    """
    if not models:
        raise DepthlensError("compare needs at least one model")
    sopts = dict(speed_options or {})
    rows: list[dict[str, Any]] = []
    for label, lm in models:
        ppl = evaluate_perplexity(lm, windows, batch_size=batch_size, progress=progress)
        info = cut_info(lm)
        row: dict[str, Any] = {
            "label": label, "ref": lm.ref, "method": info["method"],
            "removed": info["removed"], "n_removed": len(info["removed"]),
            "num_layers": lm.num_layers, "ppl": ppl["ppl"], "nll": ppl["nll"],
            "n_tokens": ppl["n_tokens"],
            "flops_per_token": flops_per_token(lm, windows.seq_len)["total"],
        }  # fmt: skip
        for name, w in (extra_data or {}).items():
            row[f"ppl_{name}"] = evaluate_perplexity(lm, w, batch_size=batch_size)["ppl"]
        if speed:
            sp = measure_speed(lm, **sopts)
            row.update(prefill_tok_s=sp["prefill_tok_s"], decode_tok_s=sp["decode_tok_s"])
        else:
            row.update(prefill_tok_s=None, decode_tok_s=None)
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["ppl_ratio"] = row["ppl"] / base["ppl"]
        row["ideal_speedup"] = base["flops_per_token"] / row["flops_per_token"]
        for k in ("prefill", "decode"):
            b, v = base[f"{k}_tok_s"], row[f"{k}_tok_s"]
            row[f"{k}_speedup"] = v / b if b and v else None
    return {
        "kind": COMPARE_KIND,
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": windows.identity,
        "extra_data": {k: w.identity for k, w in (extra_data or {}).items()},
        "options": {"speed": speed, "speed_options": sopts, "batch_size": batch_size,
                    "baseline": base["label"]},  # fmt: skip
        "models": rows,
    }


def compare_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for printing a compare result."""
    head = ["model", "method", "blocks", "ppl", "ppl ratio", "prefill tok/s", "decode tok/s",
            "prefill x", "decode x", "ideal x"]  # fmt: skip

    def f(v: Any, p: str = ".3f") -> str:
        return "-" if v is None else format(v, p)

    rows = [
        [r["label"], r["method"] or "-", r["num_layers"], f(r["ppl"], ".2f"), f(r["ppl_ratio"]),
         f(r["prefill_tok_s"], ".0f"), f(r["decode_tok_s"], ".1f"), f(r["prefill_speedup"]),
         f(r["decode_speedup"]), f(r["ideal_speedup"])]
        for r in result["models"]
    ]  # fmt: skip
    return head, rows
