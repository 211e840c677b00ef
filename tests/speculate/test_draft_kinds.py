"""Draft kinds are records: a new kind is one ``DraftKind``, seen by parsing, decoding, help."""

from __future__ import annotations

import pytest
import torch
from conftest import wrap_tiny

from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.speculate import DRAFT_KINDS, DraftKind, DraftSpec, parse_draft, speculate
from depthlens.speculate.kinds import draft_usage
from depthlens.speculate.view import DepthView


def _parse_last(text: str, body: str) -> DraftSpec:
    return DraftSpec("drop-last", text, skip=(int(body),))


def _view(lm, spec: DraftSpec) -> DepthView:
    n = lm.num_layers - spec.skip[0]
    return DepthView(lm.model, lm.arch, tuple(range(n)))


NEW_KIND = DraftKind("drop-last", "drop-last:N", "every block but the last N", _parse_last, _view)


def test_a_new_kind_is_one_record(capsys: pytest.CaptureFixture[str]) -> None:
    lm = wrap_tiny("llama")  # 4 blocks
    prompt = torch.randint(3, 100, (10,), generator=torch.Generator().manual_seed(3)).tolist()
    with DRAFT_KINDS.scoped():
        DRAFT_KINDS.register(NEW_KIND)
        assert parse_draft("drop-last:1").skip == (1,)
        got = speculate(lm, prompt, "drop-last:1", max_new_tokens=8)
        assert "drop-last:N" in draft_usage()
        with pytest.raises(SystemExit):
            main(["generate", "--help"])
        assert "drop-last:N" in capsys.readouterr().out
    # the same blocks as exit:3 (the first three, read by the final norm and head)
    want = speculate(lm, prompt, "exit:3", max_new_tokens=8)
    assert got.generated == want.generated and got.acceptance == want.acceptance
    assert "drop-last" not in DRAFT_KINDS


def test_an_unknown_kind_suggests_the_close_one() -> None:
    with pytest.raises(DepthlensError, match="did you mean 'skip:3'.*kind must be one of"):
        parse_draft("skp:3")
    with pytest.raises(DepthlensError, match="kind must be one of skip, plan, exit, cut"):
        parse_draft("layers:3")


def test_the_help_and_the_docs_table_list_every_kind() -> None:
    from depthlens.doc_tables import TABLES

    table = TABLES["draft-kinds"]()
    for kind in DRAFT_KINDS.values():
        assert kind.usage in draft_usage() and f"`{kind.usage}`" in table
    assert DRAFT_KINDS["cut"].separate_model and not DRAFT_KINDS["exit"].separate_model
