"""The CLI never ends in a raw traceback: unexpected failures and broken installs are one line."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from depthlens.cli.main import build_parser, main

PREFIX = "depthlens: error: "


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("depthlens:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_command_did_you_mean(capsys: Any) -> None:
    assert main(["profle", "smollm2-135m"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(PREFIX + "unknown command 'profle'; did you mean 'profile'?")


def test_unexpected_exception_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import depthlens.data

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("something\ninternal broke")

    monkeypatch.setattr(depthlens.data, "list_data", boom)
    assert main(["data"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(PREFIX + "unexpected RuntimeError in boom")
    assert "something internal broke" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="internal broke"):  # --debug: the real traceback
        main(["data", "--debug"])


def test_broken_dependency_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def broken(name: str, *a: Any, **k: Any) -> Any:
        if name == "depthlens.cli.eval_cmd":
            raise ModuleNotFoundError("No module named 'transformers'", name="transformers")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", broken)
    assert main(["models"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "a dependency failed to import" in line and "transformers" in line
    assert "scripts/setup.sh" in line


def test_every_command_takes_quiet_and_debug() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {
        "profile",
        "plan",
        "prune",
        "eval",
        "compare",
        "report",
        "skip",
        "think",
        "demo",
        "models",
        "data",
    } <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "--quiet" in p._option_string_actions, name
        assert "--debug" in p._option_string_actions, name
