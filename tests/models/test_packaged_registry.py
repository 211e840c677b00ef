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
