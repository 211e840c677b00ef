"""Skip sweep, reasoning score and settling depth (SPEC "Causal metrics")."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import random_windows, wrap_tiny

from depthlens.arch.spec import blocks_of
from depthlens.causal import SkipOptions, ThinkOptions, depth_jsd, skip_sweep, token_depth
from depthlens.causal.replay import zero_sublayer
from depthlens.causal.think import late_blocks
from depthlens.cli.main import main
from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel

EAGER = SkipOptions(lens_kernel="eager", batch_size=2)
FIELDS = ("skip_out_kl_mean", "skip_out_kl_max", "delta_loss", "skip_future", "skip_future_max")


def _flat(x: object) -> list[float]:
    if isinstance(x, list):
        return [v for item in x for v in _flat(item)]
    return [math.nan if x is None else float(x)]  # type: ignore[arg-type]


def _close(a: object, b: object, tol: float) -> None:
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol, (x, y)


def _zero_outputs_(lm: LoadedModel, layers: list[int]) -> None:
    """Zero the attention and MLP output projections: those blocks become identity maps."""
    for l in layers:
        block = blocks_of(lm.model, lm.arch)[l]
        with torch.no_grad():
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma3"])
def test_reusing_sweep_equals_naive(name: str) -> None:
    lm = wrap_tiny(name)
    data = random_windows(n=3, seq_len=12, pad_last=3)
    fast = skip_sweep(lm, data, EAGER, progress=False)
    naive = skip_sweep(lm, data, EAGER, progress=False, naive=True)
    assert fast.tokens == naive.tokens and fast.tokens["skip"] == 3 * 11 - 3
    for f in FIELDS:
        _close(getattr(fast, f), getattr(naive, f), 1e-6)
        _close(fast.attn_only[f], naive.attn_only[f], 1e-6)  # type: ignore[index]
        _close(fast.mlp_only[f], naive.mlp_only[f], 1e-6)  # type: ignore[index]
    n = lm.num_layers
    assert len(fast.skip_future) == n and all(len(r) == n for r in fast.skip_future)
    assert all(fast.skip_future[l][j] is None for l in range(n) for j in range(l + 1))
    assert fast.skip_out_kl_mean[0] > 0  # random blocks do matter


def test_zeroed_block_has_no_skip_effect() -> None:
    lm = wrap_tiny("llama")
    k = 1
    _zero_outputs_(lm, [k])
    res = skip_sweep(lm, random_windows(n=2, seq_len=12), EAGER, progress=False)
    n = lm.num_layers
    for r in (res.to_dict(), res.attn_only, res.mlp_only):
        assert r is not None
        assert abs(r["skip_out_kl_mean"][k]) < 1e-7 and abs(r["skip_out_kl_max"][k]) < 1e-7
        assert abs(r["delta_loss"][k]) < 1e-6
        assert all(abs(r["skip_future"][k][j]) < 1e-6 for j in range(k + 1, n))
    assert res.skip_out_kl_mean[0] > 1e-4  # an intact block, for contrast


def test_sublayer_skip_refused_for_post_norm_family() -> None:
    lm = wrap_tiny("bert")
    block = blocks_of(lm.model, lm.arch)[0]
    with (
        pytest.raises(DepthlensError, match="not supported"),
        zero_sublayer(block, lm.arch, "attn"),
    ):
        pass
    with pytest.raises(DepthlensError):
        skip_sweep(lm, random_windows(n=2, seq_len=8), EAGER, progress=False)


def test_jsd_in_range_and_settling_at_most_L() -> None:
    lm = wrap_tiny("llama")
    ids = random_windows(n=1, seq_len=20).input_ids
    jsd = depth_jsd(lm, ids)
    n = lm.num_layers
    assert jsd.shape == (20, n)
    assert float(jsd.min()) >= 0.0 and float(jsd.max()) <= math.log(2.0)
    assert float(jsd[:, -1].abs().max()) < 1e-6  # p(h_L) is p_L
    for g in (0.0, 1e-4, 0.5):
        d = token_depth(jsd, ThinkOptions(settle_threshold=g))
        assert int(d["settling_layer"].min()) >= 1 and int(d["settling_layer"].max()) <= n
        assert torch.equal(d["deep"], d["settling_layer"] >= 0.85 * n)
    # g = 0: nothing but the output itself settles, so every token settles at L.
    assert int(token_depth(jsd, ThinkOptions(settle_threshold=0.0))["settling_layer"].min()) == n


def test_reasoning_score_zero_when_late_blocks_are_identity() -> None:
    lm = wrap_tiny("llama")
    n = lm.num_layers
    late = late_blocks(n)
    assert late == [n - 2]  # ⌈4/4⌉ = 1 block before the final one
    _zero_outputs_(lm, list(range(late[0], n)))
    jsd = depth_jsd(lm, random_windows(n=1, seq_len=16).input_ids)
    d = token_depth(jsd, ThinkOptions())
    assert float(d["reasoning_score"].abs().max()) < 1e-6
    # An intact model has a positive score, for contrast.
    d0 = token_depth(
        depth_jsd(wrap_tiny("llama"), random_windows(n=1, seq_len=16).input_ids), ThinkOptions()
    )
    assert float(d0["reasoning_score"].mean()) > 1e-6


def test_profile_causal_extra() -> None:
    from depthlens.causal import add_skip_sweep
    from depthlens.profiling import ProfileOptions, profile

    lm, data = wrap_tiny("llama"), random_windows(n=2, seq_len=10)
    prof = profile(lm, data, ProfileOptions(lens_kernel="eager"), progress=False)
    out = add_skip_sweep(prof, lm, data, EAGER, progress=False)
    causal = out.extra["causal"]
    assert causal["kind"] == "depthlens.skip" and len(causal["skip_out_kl_mean"]) == 4
    assert causal["mlp_only"] is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["think", "smollm2-135m", "   "],
        ["think", "./no/such/model", "hello"],
        ["think", "smollm2-135m", "hi", "--deep-ratio", "0"],
        ["skip", "./no/such/model", "--quiet"],
        ["skip", "smollm2-135m", "--sublayers", "attention"],
    ],
)
def test_cli_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("depthlens: error: ") and "Traceback" not in "".join(err)
    assert len([e for e in err if e.startswith("depthlens: error")]) == 1


@pytest.mark.e2e
def test_think_and_skip_e2e(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "think.json"
    rc = main(
        [
            "think",
            "smollm2-135m",
            "The capital of France is",
            "--max-new-tokens",
            "3",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "depthlens.think" and d["schema_version"] >= 1
    assert d["model"]["ref"] == "smollm2-135m"
    n = d["model"]["num_layers"]
    assert len(d["per_token"]) == 3 and d["options"]["late_blocks_used"] == list(range(21, 29))
    for t in d["per_token"]:
        assert 0.0 <= t["reasoning_score"] <= math.log(2.0)
        assert 1 <= t["settling_layer"] <= n
        assert t["deep"] == (t["settling_layer"] >= 0.85 * n)
    assert 0.0 <= d["deep_thinking_ratio"] <= 1.0
    printed = capsys.readouterr().out
    assert "\033[" not in printed and d["per_token"][0]["token"].strip() in printed

    sk = Path(str(tmp_path)) / "skip.json"
    rc = main(
        [
            "skip",
            "smollm2-135m",
            "--data",
            "news",
            "--seq-len",
            "12",
            "--max-tokens",
            "12",
            "--sublayers",
            "none",
            "--skip-lens-kernel",
            "eager",
            "--quiet",
            "-o",
            str(sk),
        ]
    )
    assert rc == 0
    s = json.loads(sk.read_text())
    assert s["kind"] == "depthlens.skip" and s["attn_only"] is None
    assert len(s["skip_out_kl_mean"]) == n == len(s["skip_future"])
    assert all(v is not None and v >= 0 for v in s["skip_out_kl_mean"])
    assert s["skip_future"][0][1] is not None and s["skip_future"][1][0] is None
