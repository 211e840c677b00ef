"""The kinds of model repr reads are registry records: each recognises its models."""

from __future__ import annotations

import pytest
import torch
from conftest import wrap_tiny
from torch import nn

from depthlens.data.labelled import LabelledSet
from depthlens.errors import DepthlensError
from depthlens.models.vision import VisionSpec, wrap_vision
from depthlens.registry import Registry
from depthlens.repr.features import MODEL_KINDS, ModelKind, example_batches, extractor_for


def _toy_vision() -> object:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2))
    return wrap_vision(net, None, VisionSpec("toy", ("0", "2"), input_size=8), "toy")


def test_each_model_goes_to_its_kind() -> None:
    assert isinstance(MODEL_KINDS, Registry) and list(MODEL_KINDS) == [
        "vision",
        "causal",
        "encoder",
    ]
    llama, bert, vm = wrap_tiny("llama"), wrap_tiny("bert"), _toy_vision()
    assert extractor_for(llama).kind == "causal" and extractor_for(llama).record.sink_first
    assert extractor_for(bert).kind == "encoder" and not extractor_for(bert).record.sink_first
    ex = extractor_for(vm, image_size=8)
    assert ex.kind == "vision" and ex.record.inputs == "image" and ex.layer_names == ["0", "2"]
    assert extractor_for(llama).layer_names == [f"h{i}" for i in range(llama.num_layers + 1)]
    with pytest.raises(DepthlensError, match="no model kind reads a str"):
        extractor_for("not a model")
    with pytest.raises(DepthlensError, match="unknown model kind 'visoin'; did you mean"):
        MODEL_KINDS.get("visoin")


def test_labelled_batches_go_through_the_kind() -> None:
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    ds = LabelledSet("toy", torch.tensor([0, 1, 0, 1, 1]), images=images)
    got = list(example_batches(extractor_for(_toy_vision()), ds, 2, "mean", False))
    assert [len(y) for _, y in got] == [2, 2, 1]
    assert [f.shape for f in got[0][0]] == [(2, 4), (2, 6)]
    assert torch.equal(torch.cat([y for _, y in got]), ds.labels)


def test_a_new_model_kind_is_one_record() -> None:
    class Probe:
        """A stand-in model that no built-in kind accepts."""

    kind = ModelKind(
        "probe",
        "a test kind",
        accepts=lambda m: isinstance(m, Probe),
        inputs="text",
        layer_names=lambda m: ["only"],
        examples=lambda ex, batch, pool, first: [torch.zeros(len(batch), 1)],
    )
    with MODEL_KINDS.scoped():
        MODEL_KINDS.register(kind)
        ex = extractor_for(Probe())
        assert ex.kind == "probe" and ex.layer_names == ["only"]
        assert "`probe`" in MODEL_KINDS.markdown()
    assert "probe" not in MODEL_KINDS
