"""Compare models on the same windows in one process: perplexity, speed, ideal speed-up."""

from __future__ import annotations

from typing import Any

from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError
from depthlens.evaluate.flops import flops_per_token
from depthlens.evaluate.perplexity import evaluate_perplexity
from depthlens.evaluate.speed import SpeedComparison, interleaved_speed
from depthlens.models.loading import LoadedModel
from depthlens.models.manifest import read_manifest
from depthlens.results import Envelope

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
    check_same_tokenizer(models)
    sopts = full_speed_options(speed_options)
    rows: list[dict[str, Any]] = []
    for label, lm in models:
        ppl = evaluate_perplexity(lm, windows, batch_size=batch_size, progress=progress)
        info = cut_info(lm)
        row: dict[str, Any] = {
            "label": label, "ref": lm.ref, "fingerprint": lm.identity()["fingerprint"],
            "method": info["method"],
            "removed": info["removed"], "n_removed": len(info["removed"]),
            "num_layers": lm.num_layers, "ppl": ppl["ppl"], "nll": ppl["nll"],
            "n_tokens": ppl["n_tokens"],
            "flops_per_token": flops_per_token(lm, windows.seq_len)["total"],
        }  # fmt: skip
        for name, w in (extra_data or {}).items():
            row[f"ppl_{name}"] = evaluate_perplexity(lm, w, batch_size=batch_size)["ppl"]
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["ppl_ratio"] = row["ppl"] / base["ppl"]
        row["ideal_speedup"] = base["flops_per_token"] / row["flops_per_token"]
    sp = _speed(models, rows, sopts, progress) if speed else None
    if sp is None:
        for row in rows:
            row.update({f"{k}_{v}": None for k in ("prefill", "decode")
                        for v in ("tok_s", "speedup", "ci95", "iqr", "verdict")})  # fmt: skip
    env = Envelope(
        kind=COMPARE_KIND, model=models[0][1].identity(), data=windows.identity,
        options={"speed": speed, "speed_options": sopts, "batch_size": batch_size,
                 "baseline": base["label"]},
        tokens={"eval": windows.n_tokens},
    )  # fmt: skip
    return {
        **env.to_dict(),
        "extra_data": {k: w.identity for k, w in (extra_data or {}).items()},
        "models": rows,
        "speed": sp.to_dict() if sp is not None else None,
    }


SPEED_DEFAULTS = {"prompt_len": 256, "batch": 1, "decode_tokens": 32, "rounds": 10,
                  "warmup": 2, "seed": 0, "threads": None}  # fmt: skip


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
    rows: list[dict[str, Any]],
    sopts: dict[str, Any],
    progress: bool = False,
) -> SpeedComparison:
    """Time all models interleaved; put medians, ratios, intervals and verdicts in rows."""
    ideals = [r["ideal_speedup"] for r in rows]
    sp = interleaved_speed([lm for _, lm in models], labels=[lab for lab, _ in models],
                           ideals=ideals, progress=progress, **sopts)  # fmt: skip
    for row, ms, pre, dec in zip(rows, sp.models, sp.prefill, sp.decode, strict=True):
        row.update(prefill_tok_s=ms.prefill_tok_s, decode_tok_s=ms.decode_tok_s)
        for k, st in (("prefill", pre), ("decode", dec)):
            row[f"{k}_speedup"] = 1.0 if st is None else st.median
            row[f"{k}_ci95"] = None if st is None else list(st.ci95)
            row[f"{k}_iqr"] = None if st is None else list(st.iqr)
            row[f"{k}_verdict"] = "baseline" if st is None else st.verdict
    return sp


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


def ratio_text(row: dict[str, Any], k: str) -> str:
    """'×1.08 [1.02, 1.15] speed-up': the median ratio, its 95% interval and the verdict."""
    med, ci, ver = row.get(f"{k}_speedup"), row.get(f"{k}_ci95"), row.get(f"{k}_verdict")
    if med is None:
        return "-"
    if ver == "baseline" or not ci:
        return f"×{med:.2f}" + (" (baseline)" if ver == "baseline" else "")
    return f"×{med:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] {ver}"


def compare_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for printing a compare result (speed: median [95% CI] verdict)."""
    head = ["model", "method", "blocks", "ppl", "ppl ratio", "prefill tok/s", "decode tok/s",
            "prefill ×, 95% CI, verdict", "decode ×, 95% CI, verdict", "ideal ×"]  # fmt: skip

    def f(v: Any, p: str = ".3f") -> str:
        return "-" if v is None else format(v, p)

    rows = [
        [r["label"], r["method"] or "-", r["num_layers"], f(r["ppl"], ".2f"), f(r["ppl_ratio"]),
         f(r["prefill_tok_s"], ".0f"), f(r["decode_tok_s"], ".1f"), ratio_text(r, "prefill"),
         ratio_text(r, "decode"), f(r["ideal_speedup"])]
        for r in result["models"]
    ]  # fmt: skip
    return head, rows
