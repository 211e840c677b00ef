"""Packaged texts and the kinds of text reference are registry records."""

from __future__ import annotations

from pathlib import Path

import pytest

from depthlens.data import PACKAGED_NAMES, load_text
from depthlens.data.sources import SOURCE_KINDS, TEXTS, PackagedText, SourceKind
from depthlens.data.text import TextSource, make_source
from depthlens.errors import DepthlensError
from depthlens.registry import Registry


def test_packaged_texts_are_records_with_a_did_you_mean() -> None:
    assert isinstance(TEXTS, Registry) and PACKAGED_NAMES == tuple(TEXTS)
    assert set(TEXTS) == {"wiki", "wiki-calib", "wiki-eval", "news"}
    assert all(isinstance(t, PackagedText) and t.description for t in TEXTS.values())
    with pytest.raises(DepthlensError, match="unknown data 'wiki-evl'; did you mean 'wiki-eval'"):
        TEXTS.get("wiki-evl")
    with pytest.raises(DepthlensError, match="did you mean 'wiki-eval'"):
        load_text("wiki-evl")  # through the hub kind: a near miss is refused, not downloaded


def test_the_first_kind_that_accepts_a_ref_loads_it_and_names_its_kind(tmp_path: Path) -> None:
    assert list(SOURCE_KINDS) == ["packaged", "file", "hub"]
    assert all(isinstance(k, SourceKind) for k in SOURCE_KINDS.values())
    f = tmp_path / "a.txt"
    f.write_text("some text", encoding="utf-8")
    kind = next(k for k in SOURCE_KINDS.values() if k.accepts(str(f)))
    assert kind.name == "file" == load_text(str(f)).identity["kind"]
    assert next(k for k in SOURCE_KINDS.values() if k.accepts("news")).name == "packaged"
    assert next(k for k in SOURCE_KINDS.values() if k.accepts("org/set")).name == "hub"
    with pytest.raises(DepthlensError, match="data file not found"):
        load_text(str(tmp_path / "missing.txt"))


def test_a_new_packaged_text_is_one_record(tmp_path: Path) -> None:
    def load(name: str, cache_dir: Path | None) -> TextSource:
        return make_source(name, ["one doc"], kind="packaged")

    with TEXTS.scoped():
        TEXTS.register(PackagedText("tiny", "none", "a tiny text", load))
        src = load_text("tiny")
        assert src.docs == ("one doc",) and src.identity["kind"] == "packaged"
        assert "`tiny`" in TEXTS.markdown()
    assert "tiny" not in TEXTS
