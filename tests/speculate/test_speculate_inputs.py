"""Bad input: one line on stderr, exit 2, before the model is loaded where possible."""

from __future__ import annotations

import pytest
from conftest import wrap_tiny

from depthlens.cli.main import main
from depthlens.errors import DepthlensError, UnsupportedArchitectureError
from depthlens.speculate import parse_draft, speculate


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI tries to load a model."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("depthlens.cli.generate_cmd.load_model_from_args", refuse)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--draft", "skip:a-b"], "not a block index"),
        (["--draft", "skip:5-2"], "empty or negative"),
        (["--draft", "exit:x"], "not an integer"),
        (["--draft", "exit:3:lens:dir"], "tuned:DIR"),
        (["--draft", "layers:3"], "kind must be one of"),
        (["--draft", "skp:3"], "did you mean 'skip:3'"),
        (["--draft", "exit:3", "-k", "0"], "at least 1"),
        (["--draft", "exit:3", "-k", "-2"], "at least 1"),
        (["--draft", "exit:3", "--max-new-tokens", "0"], "max-new-tokens"),
        (["--draft", "exit:3", "--temperature", "-1"], "temperature"),
        (["--draft", "plan:/nonexistent/plan.json"], "plan file not found"),
        (["--draft", "cut:/nonexistent/dir"], "directory not found"),
    ],
)
def test_bad_generate_input_exits_2_before_loading(
    argv: list[str], needle: str, no_loading: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "smollm2-135m", *argv, "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_a_cut_dir_without_manifest_is_refused_before_loading(
    tmp_path, no_loading: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "smollm2-135m", "--draft", f"cut:{tmp_path}", "hi"]) == 2
    assert "no depthlens.json" in capsys.readouterr().err


@pytest.mark.parametrize("draft", ["exit:0", "exit:4", "exit:9", "skip:0-3", "skip:7"])
def test_depth_outside_the_model_is_refused(draft: str) -> None:
    lm = wrap_tiny("llama")  # 4 blocks
    with pytest.raises(DepthlensError, match="outside 1..3|every one of|do not exist"):
        speculate(lm, [5, 6, 7], draft, max_new_tokens=4)


def test_skipping_a_mask_reference_block_is_refused_with_the_fix() -> None:
    lm = wrap_tiny("gemma3")  # blocks 0-4 sliding, 5 global
    with pytest.raises(DepthlensError, match="keep block 0"):
        speculate(lm, [5, 6, 7], "skip:0", max_new_tokens=4)


@pytest.mark.parametrize("name", ["bert", "lab_post_ln"])
def test_families_without_a_cache_are_refused(name: str) -> None:
    lm = wrap_tiny(name)
    with pytest.raises(UnsupportedArchitectureError, match="KV cache"):
        speculate(lm, [5, 6, 7], "exit:1", max_new_tokens=4)


def test_a_cut_of_another_model_is_refused(tmp_path) -> None:
    import copy

    from conftest import random_windows
    from transformers import AutoModelForCausalLM

    from depthlens.arch.spec import resolve_arch
    from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned
    from depthlens.models.loading import LoadedModel

    other = wrap_tiny("qwen2")
    cut = LoadedModel(copy.deepcopy(other.model), None, other.arch, ref="q", source="test")
    plan = plan_cut(cut, random_windows(n=4, seq_len=16), "angular", CutOptions(n=1))
    apply_cut_(cut, plan)
    save_pruned(cut, plan, tmp_path / "cut")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "cut").eval()
    draft = LoadedModel(model, None, resolve_arch(model), ref="cut", source="test")
    with pytest.raises(DepthlensError, match="must be a cut of the model"):
        speculate(
            wrap_tiny("llama"), [5, 6], f"cut:{tmp_path / 'cut'}", max_new_tokens=4, draft_lm=draft
        )


def test_parse_draft_reads_ranges_and_lists() -> None:
    assert parse_draft("skip:12-14,23").skip == (12, 13, 14, 23)
    s = parse_draft("exit:7:tuned:/x")
    assert (s.exit_at, s.path) == (7, "/x")
