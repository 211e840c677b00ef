"""Labelled data: idx reading, seeded splits, corruptions, caps, and the listing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from depthlens.data import corrupt
from depthlens.data.labelled import list_labelled, load_labelled, sentences
from depthlens.errors import DepthlensError


def _write_idx(path: Path, arr: torch.Tensor) -> None:
    head = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.numpy().tobytes())


@pytest.fixture
def fake_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz",
            torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),
        )
        _write_idx(
            tmp_path / f"{prefix}-labels-idx1-ubyte.gz", (torch.arange(n) % 3).to(torch.uint8)
        )
    monkeypatch.setenv("DEPTHLENS_FASHION_MNIST", str(tmp_path))
    return tmp_path


def test_fashion_splits_are_seeded_capped_and_corrupted(fake_fashion: Path) -> None:
    s = load_labelled("fashion-mnist", 20, 10, seed=0)
    again = load_labelled("fashion-mnist", 20, 10, seed=0)
    assert s.train.images is not None and s.train.images.shape == (20, 1, 28, 28)
    assert torch.equal(s.train.images, again.train.images)
    assert set(s.ood) == {"noise", "blur", "contrast", "rotate"}
    for name, ood in s.ood.items():
        assert ood.images is not None and ood.images.dtype == torch.uint8
        assert torch.equal(ood.labels, s.test.labels)
        assert not torch.equal(ood.images, s.test.images), name
        assert ood.identity["corruption"] == name and "seed" in ood.identity
    assert s.train.identity["seed"] == 0 and "randperm" in s.train.identity["sample"]
    with pytest.raises(DepthlensError, match="fewer than the 100"):
        load_labelled("fashion-mnist", 100, 10, seed=0)


def test_missing_fashion_mnist_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEPTHLENS_FASHION_MNIST", str(tmp_path / "none"))
    with pytest.raises(DepthlensError, match="apt-get install dataset-fashion-mnist"):
        load_labelled("fashion-mnist", 10, 5)
    rows = {r["name"]: r for r in list_labelled()}
    assert rows["fashion-mnist"]["available"] is False and rows["fashion-mnist"]["licence"]


def test_corruptions_do_what_they_say() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (4, 3, 16, 16), generator=g, dtype=torch.uint8)
    c = corrupt.corrupt_images(x, "contrast", 0).float()
    assert float(c.std()) < 0.5 * float(x.float().std())
    b = corrupt.corrupt_images(x, "blur", 0).float()
    assert float((b[..., 1:] - b[..., :-1]).abs().mean()) < float(
        (x.float()[..., 1:] - x.float()[..., :-1]).abs().mean()
    )
    assert torch.equal(corrupt.corrupt_images(x, "noise", 5), corrupt.corrupt_images(x, "noise", 5))
    assert not torch.equal(
        corrupt.corrupt_images(x, "noise", 5), corrupt.corrupt_images(x, "noise", 6)
    )
    square = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    square[..., 4, :] = 255  # a horizontal bar becomes slanted
    r = corrupt.corrupt_images(square, "rotate", 0)
    assert int(r[0, 0, 4].sum()) < int(square[0, 0, 4].sum())
    with pytest.raises(DepthlensError, match="did you mean 'blur'"):
        corrupt.corrupt_images(x, "blurr", 0)


def test_text_corruptions_and_sentences() -> None:
    import random

    assert corrupt.lower_nopunct("Hello, World!", random.Random(0)) == "hello world"
    out = corrupt.word_dropout(" ".join(f"w{i}" for i in range(100)), random.Random(0))
    assert 50 < len(out.split()) < 90
    doc = "Short one. " + "This sentence has exactly nine words in it here. " * 2
    assert sentences(doc) == ["This sentence has exactly nine words in it here."] * 2


def test_labelled_datasets_are_records_with_a_did_you_mean() -> None:
    from depthlens.data.labelled import LABELLED, LabelledData
    from depthlens.errors import DepthlensError
    from depthlens.registry import Registry

    assert isinstance(LABELLED, Registry)
    assert list(LABELLED) == ["fashion-mnist", "cifar10", "text-domain"]
    assert all(
        isinstance(d, LabelledData) and d.kind in ("image", "text") for d in LABELLED.values()
    )
    with pytest.raises(DepthlensError, match="unknown labelled data 'cifar-10'; did you mean"):
        load_labelled("cifar-10", 10, 10)
    assert len(LABELLED.markdown().splitlines()) == 2 + len(LABELLED)
    from depthlens.repr.api import check_pairing

    with pytest.raises(DepthlensError, match="unknown data 'cifar-10'; did you mean 'cifar10'"):
        check_pairing("smollm2-135m", "cifar-10")  # before any model is loaded
