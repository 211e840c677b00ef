"""Shared fixtures: tiny random models wrapped for depthlens, and the real default model."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import torch
from fixtures_saved import save_tiny, write_text
from tiny_models import tiny_model

from depthlens.arch.spec import resolve_arch
from depthlens.data.windows import TokenWindows
from depthlens.models.loading import LoadedModel

# Keep the real model's cache between runs (CI and developers), but never touch the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """A session without e2e tests (the fast tier) runs torch on one thread.

    Tiny models gain nothing from a second thread, and on a shared machine two threads
    spinning per op made the fast tier 4x slower (199 s vs 53 s wall at load average ~3.9).
    Decided once per session, so every result in it uses the same thread count; sessions
    with e2e tests keep two threads, as their child processes do.
    """
    if not any(item.get_closest_marker("e2e") for item in session.items):
        torch.set_num_threads(1)


def wrap_tiny(name: str) -> LoadedModel:
    """A tiny random model as a LoadedModel (no tokenizer: tests build token ids)."""
    model = tiny_model(name)
    return LoadedModel(model, None, resolve_arch(model), ref=f"tiny-{name}", source="test")


def random_windows(
    n: int = 6, seq_len: int = 16, vocab: int = 128, seed: int = 0, pad_last: int = 0
) -> TokenWindows:
    """Random token windows; the last window gets ``pad_last`` right-padding positions."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, seq_len), generator=gen)
    ids[:, 0] = 1  # BOS
    mask = torch.ones_like(ids)
    if pad_last:
        mask[-1, seq_len - pad_last :] = 0
        ids[-1, seq_len - pad_last :] = 0
    return TokenWindows(ids, mask, {"source": {"name": f"random-{seed}"}, "seq_len": seq_len})


@pytest.fixture
def tiny_llama() -> LoadedModel:
    return wrap_tiny("llama")


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything loads a model: the command must check its input first."""

    def fail(*_a: object, **_k: object) -> None:
        pytest.fail("the model was loaded before the command checked its options")

    import depthlens.models.loading as loading

    monkeypatch.setattr(loading, "load_model", fail)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama saved with its tokenizer, as the CLI loads it (one per test module)."""
    return save_tiny(tmp_path_factory.mktemp("saved") / "tiny-llama")


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text file of 400 words the tiny tokenizer knows (one per test module)."""
    return write_text(tmp_path_factory.mktemp("text") / "t.txt", 400)


# A 1x1 PNG: what report figures become in tests about captions, structure or wiring
# rather than pixels (rasterising ~13 figures costs ~1 s per report). Pixels are checked
# by tests/report/test_report.py::test_every_plot_present_and_a_real_png.
ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def no_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's figures are still drawn (every matplotlib call runs), not rasterised."""
    import depthlens.report.plots as plots

    monkeypatch.setattr(plots, "png_bytes", lambda fig: ONE_PIXEL_PNG)


@pytest.fixture(scope="session")
def real_lm() -> LoadedModel:
    """The packaged default model (SmolLM2-135M), loaded once per test session."""
    from depthlens.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    from depthlens.paths import default_cache_dir

    return default_cache_dir()


@pytest.fixture(autouse=True)
def _real_models_only_in_e2e(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that loads a packaged real model must be marked e2e (so -m 'not e2e' is fast).

    Loading a packaged model goes through ``ensure_packaged`` (LMs, encoders) or
    ``load_vision`` (which finds the weights' package with ``package_dir``); outside e2e
    tests both fail loudly instead.
    """
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError(f"{request.node.nodeid} loads a real packaged model: mark it e2e")

    import depthlens.models.gguf_cache as gguf_cache
    import depthlens.models.vision as vision

    monkeypatch.setattr(gguf_cache, "ensure_packaged", refuse)
    monkeypatch.setattr(vision, "package_dir", refuse)
