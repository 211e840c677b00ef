"""Public API: ``analyse_repr`` (one model) and ``similarity`` (two models, same inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from depthlens.data.labelled import LABELLED, LabelledSplits, load_labelled
from depthlens.errors import DepthlensError
from depthlens.metrics.catalog.repr import CKA, NC1, PROBE_ACC, PROBE_ACC_OOD
from depthlens.repr.cka import StreamingCKA
from depthlens.repr.features import Extractor, extractor_for
from depthlens.repr.result import ReprResult, SimilarityResult, repr_envelope
from depthlens.repr.run import (
    CkaBuffer,
    ReprOptions,
    best,
    collapse_of,
    features_of,
    geometry_of,
    probe_table,
    token_pass,
)

IMAGE_DATA = tuple(d.name for d in LABELLED.values() if d.kind == "image")


def is_vision_ref(ref: str) -> bool:
    """Whether ``ref`` names a packaged vision network."""
    from depthlens.models.registry import packaged_names

    return ref in packaged_names("vision")


def check_pairing(ref: str, data: str) -> None:
    """Refuse a vision model on text or a text model on images, before loading anything."""
    _check_data_typo(data)
    if is_vision_ref(ref) and data not in IMAGE_DATA:
        raise DepthlensError(
            f"{ref} is a vision network; pass image data: --data {' or '.join(IMAGE_DATA)}"
        )
    if not is_vision_ref(ref) and data in IMAGE_DATA:
        _check_vision_typo(ref)
        raise DepthlensError(
            f"--data {data} holds images but {ref} is a text model; use "
            "--data text-domain or a text such as wiki-calib"
        )


def _check_data_typo(data: str) -> None:
    """A bare name close to a labelled dataset is a typo, not a text to look for."""
    import difflib

    from depthlens.data.sources import PACKAGED_NAMES
    from depthlens.registry import UnknownChoiceError, unknown_choice

    bare = "/" not in data and not Path(data).expanduser().exists()
    names = [*LABELLED, *PACKAGED_NAMES]
    if bare and data not in names and difflib.get_close_matches(data, list(LABELLED), cutoff=0.75):
        raise UnknownChoiceError(unknown_choice("data", data, names))


def _check_vision_typo(ref: str) -> None:
    """A name close to a packaged vision network is a typo, not a text model."""
    import difflib

    from depthlens.models.registry import packaged_names
    from depthlens.registry import UnknownChoiceError, unknown_choice

    vision = packaged_names("vision")
    if difflib.get_close_matches(ref, vision, n=1, cutoff=0.6):
        raise UnknownChoiceError(unknown_choice("vision model", ref, vision))


def load_repr_model(ref: str, device: str = "cpu", dtype: str = "float32", **kw: Any) -> Any:
    """A packaged vision network, or any model :func:`load_model` accepts (encoders too)."""
    from depthlens.models.loading import load_model
    from depthlens.models.vision import load_vision

    if is_vision_ref(ref):
        return load_vision(ref, device)
    return load_model(ref, device=device, dtype=dtype, **kw)


def _definitions() -> dict[str, Any]:
    from depthlens.metrics.registry import all_metrics

    return {r.name: r.to_dict() for r in all_metrics("repr")}


def _matrix(t: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in t]


def _cka_info(cka: StreamingCKA, opts: ReprOptions) -> dict[str, Any]:
    return {
        "batch": opts.cka_batch,
        "n_batches": cka.n_batches,
        "n_examples": cka.n_examples,
        "n_dropped": cka.n_dropped,
        "estimator": "mean of unbiased HSIC_1 over minibatches (Nguyen et al. 2021)",
    }


def _tokens_payload(ex: Extractor, windows: Any, opts: ReprOptions, progress: Any) -> Any:
    samples, cka, n_total = token_pass([ex], windows, opts, progress)
    metrics: dict[str, Any] = geometry_of(samples[0], opts)
    metrics[CKA.name] = _matrix(cka.result())
    unit = {"token": "real token", "last": "window (its last token)", "mean": "window (mean)"}
    sample = {
        "geometry": {
            "n": opts.max_samples,
            "of": n_total,
            "seed": opts.seed,
            "pool": opts.pool,
            "rule": f"one point per {unit[str(opts.pool)]}, indices by randperm(seed); first "
            "position " + ("kept" if opts.include_first_token else "excluded"),
            **_exclusion_rule(opts),
        },
        CKA.name: _cka_info(cka, opts),
    }
    return metrics, sample, n_total


def _token_counts(windows: Any, opts: ReprOptions, n_points: int) -> dict[str, int]:
    """Tokens behind the numbers; with --pool last/mean also the points (one per window)."""
    if opts.pool == "token":
        return {"n_tokens": n_points}
    return {"n_tokens": int(windows.attention_mask.sum()), "n_windows": n_points}


def _exclusion_rule(opts: ReprOptions) -> dict[str, str]:
    """How duplicates and massive activations enter the geometry (stated in the output)."""
    massive = f"row norm > {opts.massive_k:g} × the layer's median row norm"
    return {
        "duplicates": "exact repeated rows counted per layer (duplicates) and removed before "
        "TwoNN and GRIDE",
        "massive": f"{massive}: counted per layer (massive); "
        + ("removed before every geometry figure" if opts.exclude_massive else "kept"),
    }


def _labelled_payload(ex: Extractor, splits: LabelledSplits, opts: ReprOptions) -> Any:
    cka = StreamingCKA(len(ex.layer_names))
    buf = CkaBuffer(cka, opts.cka_batch)
    train, y = features_of(ex, splits.train, opts, buf)
    buf.flush()
    evals = {"test": features_of(ex, splits.test, opts)}
    evals.update({f"ood:{k}": features_of(ex, v, opts) for k, v in splits.ood.items()})
    metrics: dict[str, Any] = geometry_of(train, opts)
    metrics[CKA.name] = _matrix(cka.result())
    acc = probe_table(train, y, evals, opts)
    ood = {k.removeprefix("ood:"): v for k, v in acc.items() if k.startswith("ood:")}
    n = len(train)
    if ood:
        ood["mean"] = [sum(v[l] for v in ood.values()) / len(ood) for l in range(n)]
    metrics.update(
        {PROBE_ACC.name: acc["test"], "probe_acc_train": acc["train"], PROBE_ACC_OOD.name: ood}
    )
    metrics.update(collapse_of(train, y))
    summary = {
        "last_layer": n - 1,
        "probe_best_test": best(acc["test"]),
        "probe_best_ood": {k: best(v) for k, v in ood.items()},
        "nc1_min": best([-v for v in metrics[NC1.name]]),
    }
    sample = {
        "train": splits.train.identity,
        "test": splits.test.identity,
        "ood": {k: v.identity for k, v in splits.ood.items()},
        CKA.name: _cka_info(cka, opts),
    }
    return metrics, sample, summary


def analyse_repr(
    model: Any, data: Any, opts: ReprOptions | None = None, progress: Any = None
) -> ReprResult:
    """Representation metrics of ``model`` (LoadedModel or VisionModel) on ``data``.

    ``data``: TokenWindows (token mode) or LabelledSplits (labelled mode).
    """
    opts = (opts or ReprOptions()).resolved(tokens=not isinstance(data, LabelledSplits))
    opts.validate()
    ex = extractor_for(model, opts.image_size)
    payload: dict[str, Any] = {"layers": ex.layer_names, "model_kind": ex.kind}
    if isinstance(data, LabelledSplits):
        _check_kind(ex, data, opts.pool)
        metrics, sample, summary = _labelled_payload(ex, data, opts)
        payload.update(mode="labelled", summary=summary)
        data_id, tokens = data.to_dict(), {"n_train": len(data.train), "n_test": len(data.test)}
    else:
        if opts.probe:
            raise DepthlensError(
                f"linear probes need labelled data, and "
                f"{data.to_dict().get('name', 'this text')!r} has no labels; pass --data "
                "text-domain (text), fashion-mnist or cifar10 (images)"
            )
        if ex.record.inputs == "image":
            raise DepthlensError("a vision network needs image data (--data fashion-mnist)")
        metrics, sample, n_total = _tokens_payload(ex, data, opts, progress)
        payload.update(mode="tokens")
        data_id, tokens = data.to_dict(), _token_counts(data, opts, n_total)
    payload.update(metrics=metrics, samples=sample, definitions=_definitions())
    env = repr_envelope("repr", ex.identity(), data_id, opts.to_dict(), tokens)
    return ReprResult(envelope=env, **payload)


def _check_kind(ex: Extractor, data: LabelledSplits, pool: str | None = "mean") -> None:
    if ex.record.inputs != data.train.kind:
        raise DepthlensError(
            f"a {ex.kind} model cannot read {data.train.kind} data; pair "
            "vision networks with images and text models with text"
        )
    if ex.record.sink_first and pool == "first":
        raise DepthlensError(
            "--pool first reads the first position, which a causal LM fills "
            "from that token alone (the same BOS for every sentence); use "
            "--pool mean or --pool last"
        )


def similarity(
    a: Any, b: Any, data: Any, opts: ReprOptions | None = None, progress: Any = None
) -> SimilarityResult:
    """CKA between every layer of ``a`` and every layer of ``b`` on the same inputs."""
    opts = (opts or ReprOptions()).resolved(tokens=not isinstance(data, LabelledSplits))
    opts.validate()
    ea, eb = extractor_for(a, opts.image_size), extractor_for(b, opts.image_size)
    if isinstance(data, LabelledSplits):
        _check_kind(ea, data, opts.pool)
        _check_kind(eb, data, opts.pool)
        cka = StreamingCKA(len(ea.layer_names), len(eb.layer_names))
        buf = CkaBuffer(cka, opts.cka_batch)
        fa, _ = features_of(ea, data.train, opts)
        fb, _ = features_of(eb, data.train, opts)
        buf.add(fa, fb)
        buf.flush()
        data_id, tokens = data.train.identity, {"n_examples": len(data.train)}
    else:
        _check_same_tokenizer(a, b)
        _, cka, n_total = token_pass([ea, eb], data, opts, progress)
        data_id, tokens = data.to_dict(), _token_counts(data, opts, n_total)
    cka_name = CKA.name  # the one metric of a similarity result
    return SimilarityResult(
        envelope=repr_envelope("similarity", ea.identity(), data_id, opts.to_dict(), tokens),
        layers_a=ea.layer_names,
        layers_b=eb.layer_names,
        model_b=eb.identity(),
        metrics={cka_name: _matrix(cka.result())},
        samples={cka_name: _cka_info(cka, opts)},
        definitions={cka_name: _definitions()[cka_name]},
    )


def _check_same_tokenizer(a: Any, b: Any) -> None:
    ta, tb = getattr(a, "tokenizer", None), getattr(b, "tokenizer", None)
    if ta is not None and tb is not None and ta.get_vocab() != tb.get_vocab():
        raise DepthlensError(
            "token-level CKA needs two models with the same tokenizer (the same tokens); for "
            "models with different tokenizers use sentence features: --data text-domain"
        )


def load_data(name: str, opts: ReprOptions) -> LabelledSplits:
    """The labelled splits named ``name`` with the caps and seed of ``opts``."""
    return load_labelled(name, opts.max_samples, opts.test_samples, opts.seed, opts.corruptions)
