"""Packaged models are registry records: found by name, with a did-you-mean."""

from __future__ import annotations

import pytest

from depthlens.errors import DepthlensError
from depthlens.models.registry import DEFAULT_MODEL, PACKAGED, PackagedModel
from depthlens.registry import Registry


def test_packaged_models_are_a_registry_with_did_you_mean() -> None:
    assert isinstance(PACKAGED, Registry)
    assert {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"} <= set(PACKAGED)
    assert DEFAULT_MODEL in PACKAGED and PACKAGED[DEFAULT_MODEL].name == DEFAULT_MODEL
    assert all(
        isinstance(m, PackagedModel) and m.install.startswith("pip ") for m in PACKAGED.values()
    )
    with pytest.raises(DepthlensError, match="did you mean 'qwen2.5-coder-0.5b'"):
        PACKAGED.get("qwen2.5-coder-05b")


def test_a_mistyped_name_through_the_loader() -> None:
    from depthlens.models import load_model

    with pytest.raises(DepthlensError, match="did you mean 'smollm2-135m'"):
        load_model("smollm2-13m")


def test_one_registry_holds_every_modality() -> None:
    from depthlens.models.registry import packaged_names

    assert {m.modality for m in PACKAGED.values()} == {"causal", "encoder", "vision"}
    assert packaged_names("vision") == ["mobilenet-v2"]
    assert packaged_names("encoder") == ["all-minilm-l6-v2"]
    assert packaged_names() == list(PACKAGED)


def test_a_mistyped_or_misplaced_vision_network_is_one_line() -> None:
    from depthlens.models import load_model
    from depthlens.models.vision import load_vision

    with pytest.raises(DepthlensError, match="unknown vision model 'mobilenet-v3'; did you mean"):
        load_vision("mobilenet-v3")
    from depthlens.repr.api import check_pairing

    with pytest.raises(DepthlensError, match="did you mean 'mobilenet-v2'"):
        check_pairing("mobilenet-v3", "fashion-mnist")  # a typo, not "a text model"
    with pytest.raises(DepthlensError, match="did you mean 'mobilenet-v2'"):
        load_model("mobilenet-v3")  # through the one registry of every modality
    with pytest.raises(DepthlensError, match="mobilenet-v2 is a vision network"):
        load_model("mobilenet-v2")
