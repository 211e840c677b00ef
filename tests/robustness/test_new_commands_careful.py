"""The commands added since the last hardening get the same manners (issue 20 cases 4, 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, run_cli

from depthlens.cli.main import main


def _error(capsys: Any, argv: list[str]) -> str:
    """The one error line of ``depthlens *argv`` (which must exit 2)."""
    return assert_one_error(*run_cli(capsys, *argv), "")


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["lens", "trian"], "unknown 'lens' subcommand 'trian'; did you mean 'train'?"),
        (["study", "dept", "-o", "x"], "unknown 'study' subcommand 'dept'; did you mean 'depth'?"),
        (["--debug", "prfile"], "unknown command 'prfile'; did you mean 'profile'?"),
    ],
)
def test_did_you_mean_at_every_level(capsys: Any, argv: list[str], hint: str) -> None:
    assert hint in _error(capsys, argv)


@pytest.mark.parametrize("lone", ["folder", "smollm2-135m", "m.gguf"])
def test_think_with_the_prompt_forgotten(capsys: Any, tmp_path: Path, lone: str) -> None:
    ref = str(tmp_path / "pruned4") if lone == "folder" else lone
    if lone == "folder":
        Path(ref).mkdir()
    line = _error(capsys, ["think", ref])
    assert "is a model, not a prompt" in line and f'depthlens think {ref} "' in line


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from fixtures_saved import save_tiny, write_text

    root = tmp_path_factory.mktemp("careful")
    return save_tiny(root / "m"), write_text(root / "t.txt", 600)


def test_default_seq_len_adapts_to_the_model_context(
    capsys: Any, tmp_path: Path, tiny_dir: tuple[Path, Path]
) -> None:
    model, text = tiny_dir  # a context of 64 tokens, below the default --seq-len 512
    argv = ["profile", str(model), "--data", str(text), "--lens-kernel", "eager", "--quiet"]
    capsys.readouterr()
    assert main([*argv, "--max-tokens", "256", "-o", str(tmp_path / "p.json")]) == 0
    err = capsys.readouterr().err
    assert "--seq-len 512 (the default) is longer than" in err and "using --seq-len 64" in err
    line = _error(capsys, [*argv, "--seq-len", "512"])  # a typed value is not changed
    assert "--seq-len 512 is longer than" in line and "use at most 64" in line
    line = _error(capsys, [*argv, "--max-tokens", "32"])  # below one adapted window
    assert "--max-tokens 32 is smaller than one window (--seq-len 64)" in line


def test_default_max_samples_adapts_to_the_tokens(capsys: Any, tiny_dir: tuple[Path, Path]) -> None:
    model, text = tiny_dir
    argv = ["repr", str(model), "--data", str(text), "--seq-len", "32", "--max-tokens", "256"]
    capsys.readouterr()
    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--max-samples 2000 (the default) is more than the" in err and "sampling all" in err
    assert "fewer than --max-samples 2000" in _error(capsys, [*argv, "--max-samples", "2000"])


def test_default_max_samples_adapts_to_the_windows_with_pool_last(
    capsys: Any, tiny_dir: tuple[Path, Path]
) -> None:
    # One point per window: the default shrinks to the windows, not to the tokens.
    model, text = tiny_dir
    argv = ["repr", str(model), "--data", str(text), "--seq-len", "16", "--max-tokens", "256"]
    capsys.readouterr()
    assert main([*argv, "--pool", "last", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "windows (--pool last)" in err and "sampling all" in err


def test_messages_read_right(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """ "at at", "ln V = inf", "k=40.0", an unfilled "1..L", "-o" for --gguf (issue 20.10)."""
    import errno
    import tempfile

    from depthlens.errors import DepthlensError
    from depthlens.exit.rules import ExitRule
    from depthlens.results import read_json

    bad = tmp_path / "bad.json"
    bad.write_text('{"a": "x\x01"}')
    with pytest.raises(DepthlensError) as exc:
        read_json(bad)
    assert "at at" not in str(exc.value) and "control character at line 1" in str(exc.value)
    for rule, kw, want in [
        (ExitRule("entropy", -1.0), {}, "outside [0, ln V] nats"),
        (ExitRule("settled", 40.0), {"n_layers": 30}, "k=40 must be"),
        (ExitRule("confidence", 0.9, min_depth=31), {"n_layers": 30}, "must be in 1..30"),
    ]:
        with pytest.raises(DepthlensError) as exc:
            rule.check(**kw)
        assert want in str(exc.value) and "inf" not in str(exc.value)

    folder = tmp_path / "ro"
    folder.mkdir()
    real = tempfile.mkstemp

    def read_only(*a: Any, dir: Any = None, **k: Any) -> Any:  # noqa: A002
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    from tiny_checkpoints import tiny_pruned  # a BPE tokenizer: export refuses others first

    model = tiny_pruned(tmp_path)[0]
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    line = _error(capsys, ["export", str(model), "--gguf", str(folder / "m.gguf")])
    assert "choose a writable folder with --gguf" in line


def test_quiet_silences_the_gguf_dequantizing_bar(tmp_path: Path, capfd: Any) -> None:
    """transformers draws that bar with tqdm directly; --quiet must reach it (issue 20.10)."""
    from tiny_checkpoints import tiny_pruned

    from depthlens.export.gguf import export_gguf
    from depthlens.models.loading import load_model
    from depthlens.progress import set_quiet

    pruned = tiny_pruned(tmp_path)[0]
    gguf = tmp_path / "m.gguf"
    export_gguf(pruned, gguf, kind="f32")
    capfd.readouterr()
    for quiet, cache in ((False, "c1"), (True, "c2")):
        set_quiet(quiet)
        try:
            load_model(str(gguf), cache_dir=tmp_path / cache)
        finally:
            set_quiet(False)
        shown = "de-quantizing GGUF tensors" in capfd.readouterr().err
        assert shown is not quiet


@pytest.mark.parametrize("kind", ["folder", "packaged"])
def test_heal_refuses_a_checkpoint_never_cut(
    capsys: Any, tmp_path: Path, tiny_dir: tuple[Path, Path], kind: str
) -> None:
    """An uncut model was "healed" into a full copy of itself (issue 20.3, CLI part)."""
    model, text = tiny_dir
    ref = str(model) if kind == "folder" else "smollm2-135m"
    out = tmp_path / "healed"
    argv = ["heal", ref, "--teacher", str(model), "--steps", "1", "--data", str(text)]
    assert "was never cut" in _error(capsys, [*argv, "-o", str(out), "--quiet"])
    assert not out.exists()
