"""Kinds of model reference are records of MODEL_SOURCES; the first that accepts one loads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from depthlens.doc_tables import TABLES
from depthlens.errors import DepthlensError
from depthlens.models.loading import load_model
from depthlens.models.sources import MODEL_SOURCES, model_source


def test_the_kinds_are_tried_in_order() -> None:
    assert MODEL_SOURCES.names() == ["packaged", "gguf", "local", "hub"]


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("smollm2-135m", "packaged"),  # a packaged name wins over any file of that name
        ("m.gguf", "gguf"),  # a .gguf that may not exist yet: refused by its own kind
        ("./pruned", "local"),
        ("~/models/x", "local"),
        ("a/b/c", "local"),
        ("org/name", "hub"),
        ("smollm2-13m", "hub"),  # the hub kind turns a packaged-name typo into a did-you-mean
    ],
)
def test_the_first_kind_that_accepts_a_reference_takes_it(ref: str, kind: str) -> None:
    assert model_source(ref).name == kind


def test_an_existing_folder_is_local_even_without_a_path_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pruned4").mkdir()
    monkeypatch.chdir(tmp_path)
    assert model_source("pruned4").name == "local"


def test_the_loaded_model_records_the_kind_that_loaded_it(model_dir: Path) -> None:
    lm = load_model(str(model_dir))
    ident = lm.identity()
    assert (lm.source, ident["source"], ident["path"]) == ("local", "local", str(model_dir))


def test_a_packaged_name_typo_gets_a_did_you_mean() -> None:
    with pytest.raises(DepthlensError, match="did you mean 'smollm2-135m'"):
        load_model("smollm2-13m")


def test_a_missing_gguf_is_refused_by_its_kind(tmp_path: Path) -> None:
    with pytest.raises(DepthlensError, match="model file not found: .*; check the path"):
        load_model(str(tmp_path / "absent.gguf"))


def test_the_docs_table_renders_every_kind() -> None:
    table = TABLES["model-sources"]()
    assert len(table.splitlines()) == 2 + len(MODEL_SOURCES)
    assert all(f"`{name}`" in table for name in MODEL_SOURCES)


def test_a_new_kind_is_one_record_tried_before_the_hub_fallback(model_dir: Path) -> None:
    from depthlens.models.sources import ModelSource

    zoo = ModelSource(
        "zoo",
        "`zoo:NAME`: a model of the test zoo",
        "the zoo's folder",
        accepts=lambda ref: ref.startswith("zoo:"),
        resolve=lambda ref, _opts, _cache: model_dir,
    )
    with MODEL_SOURCES.scoped() as sources:
        sources.register(zoo)
        lm = load_model("zoo:tiny")
        assert model_source("org/name").name == "hub"
    assert (lm.source, lm.identity()["path"]) == ("zoo", str(model_dir))
    assert "zoo" not in MODEL_SOURCES and model_source("zoo:tiny").name == "hub"


def test_a_folder_depthlens_wrote_is_never_unpickled(model_dir: Path, tmp_path: Path) -> None:
    """--allow-pickle is for the user's checkpoints, not for the cached copies we write."""
    import shutil

    import torch

    from depthlens.models.sources import ModelSource

    pkl = Path(shutil.copytree(model_dir, tmp_path / "pkl"))
    state = load_model(str(model_dir)).model.state_dict()
    (pkl / "model.safetensors").unlink()
    torch.save(state, pkl / "pytorch_model.bin")
    ours = ModelSource(
        "ours",
        "`ours:NAME`",
        "the folder",
        accepts=lambda ref: ref.startswith("ours:"),
        resolve=lambda ref, _opts, _cache: pkl,
        own_files=True,
    )
    assert MODEL_SOURCES["packaged"].own_files and MODEL_SOURCES["gguf"].own_files
    with MODEL_SOURCES.scoped() as sources:
        sources.register(ours)
        with pytest.raises(DepthlensError, match="has only pickle weights"):
            load_model("ours:x", allow_pickle=True)
    assert load_model(str(pkl), allow_pickle=True).source == "local"  # the user's: allowed
