"""Labelled data for probes and neural collapse: images and sentences with class labels.

Sources (``depthlens data`` lists them with sizes and licences):

- ``fashion-mnist``: Debian package ``dataset-fashion-mnist`` (idx .gz; 60k train, 10k test).
- ``cifar10``: the 10,000 CIFAR-10 test images inside BIG-bench (optional step
  ``scripts/setup-bigbench.sh``); split into probe-train and test by a seeded permutation.
- ``text-domain``: sentences labelled by domain, wiki (0) vs news (1), from the packaged
  texts; train and test come from disjoint documents.

Out-of-distribution splits are the test split under corruptions (:mod:`corrupt`): for
images Gaussian noise, blur, contrast and rotation; for text lower-casing without
punctuation, and word dropout. Every cap and seed goes into the split's identity.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.paths import default_cache_dir
from depthlens.registry import Registry

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_INSTALL = "apt-get install dataset-fashion-mnist (as root), or scripts/setup-datasets.sh"
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
BIGBENCH_INSTALL = "bash scripts/setup-bigbench.sh"


@dataclass(frozen=True)
class LabelledSet:
    """Examples with integer labels: images (N, C, H, W) uint8, or sentences."""

    name: str
    labels: torch.Tensor  # (N,) int64
    images: torch.Tensor | None = None
    texts: tuple[str, ...] | None = None
    class_names: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def kind(self) -> str:
        """'image' or 'text'."""
        return "image" if self.images is not None else "text"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: torch.Tensor, name: str | None = None, **info: Any) -> LabelledSet:
        """The examples at ``idx``, with what was taken recorded in the identity."""
        texts = tuple(self.texts[i] for i in idx.tolist()) if self.texts is not None else None
        images = self.images[idx] if self.images is not None else None
        ident = {**self.identity, "n": int(idx.numel()), **info}
        return LabelledSet(
            name or self.name, self.labels[idx], images, texts, self.class_names, ident
        )


@dataclass(frozen=True)
class LabelledSplits:
    """Train (probe fit, NC), test (held out, same distribution) and named OOD splits."""

    train: LabelledSet
    test: LabelledSet
    ood: dict[str, LabelledSet]

    def to_dict(self) -> dict[str, Any]:
        """Identities of every split (never the examples)."""
        return {
            "train": self.train.identity,
            "test": self.test.identity,
            "ood": {k: v.identity for k, v in self.ood.items()},
        }


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DepthlensError(f"{path} is not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8).reshape(shape)


def fashion_dir() -> Path:
    """Where the Fashion-MNIST idx files are ($DEPTHLENS_FASHION_MNIST or Debian's path)."""
    return Path(os.environ.get("DEPTHLENS_FASHION_MNIST", FASHION_DIR))


def load_fashion_mnist(split: str) -> LabelledSet:
    """Fashion-MNIST 'train' (60k) or 'test' (10k) as (N, 1, 28, 28) uint8 images."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = fashion_dir()
    img, lab = d / f"{prefix}-images-idx3-ubyte.gz", d / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.is_file() or not lab.is_file():
        raise DepthlensError(f"Fashion-MNIST is not installed (no {img}); run {FASHION_INSTALL}")
    images = _read_idx(img).unsqueeze(1)  # (N, 1, 28, 28)
    labels = _read_idx(lab).long()
    ident = {"name": "fashion-mnist", "split": split, "path": str(img), "n_total": len(labels)}
    return LabelledSet("fashion-mnist", labels, images, None, FASHION_CLASSES, ident)


# --------------------------------------------------------------------------- CIFAR-10 (BIG-bench)


def cifar_task_file(cache_dir: Path | None = None) -> Path:
    """The BIG-bench CIFAR-10 task JSON in the depthlens cache."""
    root = (cache_dir or default_cache_dir()) / "bigbench" / "benchmark_tasks"
    hits = [root / "cifar10_classification" / "base64" / "task.json"]
    if not hits[0].is_file():
        raise DepthlensError(
            f"CIFAR-10 is not installed (no cifar10_classification task under {root}); run "
            f"{BIGBENCH_INSTALL}"
        )
    return hits[0]


def load_cifar10(cache_dir: Path | None = None) -> LabelledSet:
    """The 10,000 CIFAR-10 test images from BIG-bench as (N, 3, 32, 32) uint8."""
    from depthlens.data.cifar_bigbench import read_cifar_task

    path = cifar_task_file(cache_dir)
    images, labels = read_cifar_task(path, CIFAR_CLASSES)
    ident = {"name": "cifar10", "split": "test", "path": str(path), "n_total": len(labels)}
    return LabelledSet("cifar10", labels, images, None, CIFAR_CLASSES, ident)


# --------------------------------------------------------------------------- text domain

_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
TEXT_MIN_WORDS, TEXT_MAX_WORDS = 8, 60


def sentences(doc: str) -> list[str]:
    """Split a document into sentences of 8-60 words (headings and fragments dropped)."""
    out = []
    for line in doc.splitlines():
        for s in _SENT_RE.split(line.strip()):
            if TEXT_MIN_WORDS <= len(s.split()) <= TEXT_MAX_WORDS:
                out.append(s.strip())
    return out


def _balance(rows: list[tuple[str, int]], seed: int) -> list[tuple[str, int]]:
    """Keep a seeded subset of each class as large as the smallest class, in order."""
    by: dict[int, list[int]] = {}
    for i, (_, y) in enumerate(rows):
        by.setdefault(y, []).append(i)
    n = min(len(v) for v in by.values())
    gen = torch.Generator().manual_seed(seed)
    keep = sorted(v[j] for v in by.values() for j in torch.randperm(len(v), generator=gen)[:n])
    return [rows[i] for i in keep]


def load_text_domain(seed: int = 0, test_docs: float = 0.3) -> tuple[LabelledSet, LabelledSet]:
    """(train, test) sentences labelled wiki (0) / news (1), split by document.

    Documents of each domain are shuffled with ``seed``; the last ``test_docs`` share of
    them give the test sentences, so no test sentence shares a document with training.
    """
    from depthlens.data.sources import load_text

    parts: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, ref in ((0, "wiki"), (1, "news")):
        docs = load_text(ref).docs
        order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(docs) * (1 - test_docs)))
        for rank, i in enumerate(order.tolist()):
            split = "train" if rank < cut else "test"
            parts[split] += [(s, label) for s in sentences(docs[i])]
    sets = []
    for split, rows in parts.items():
        rows = _balance(rows, seed)
        texts = tuple(t for t, _ in rows)
        labels = torch.tensor([y for _, y in rows], dtype=torch.long)
        ident = {
            "name": "text-domain",
            "split": split,
            "n_total": len(rows),
            "seed": seed,
            "rule": f"documents shuffled with seed; last {test_docs:.0%} of each domain -> "
            "test; sentences of 8-60 words; classes balanced by a seeded "
            "subset of the larger one",
        }
        sets.append(LabelledSet("text-domain", labels, None, texts, ("wiki", "news"), ident))
    return sets[0], sets[1]


# --------------------------------------------------------------------------- splits and listing


def _take(ds: LabelledSet, n: int, seed: int, what: str, offset: int = 0) -> LabelledSet:
    if n > len(ds) - offset:
        raise DepthlensError(
            f"{ds.name} has {len(ds) - offset} {what} examples, fewer than the {n} asked for; "
            f"lower --max-samples/--test-samples to at most {len(ds) - offset}"
        )
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    idx = order[offset : offset + n].sort().values
    return ds.subset(idx, sample=f"{n} of {len(ds)} by randperm(seed={seed})", seed=seed)


@dataclass(frozen=True)
class LabelledData:
    """A labelled dataset: what it is, how to get it, and how its splits are drawn."""

    name: str
    kind: str  # "image" or "text": the model kind that reads it
    size: str
    licence: str
    install: str
    description: str
    # (n_train, n_test, seed) -> (train, test), capped and seeded
    splits: Callable[[int, int, int], tuple[LabelledSet, LabelledSet]]
    available: Callable[[], bool]  # whether its files are on this machine (cheap)


LABELLED: Registry[LabelledData] = Registry(
    "labelled data",
    columns=(
        ("name", lambda d: f"`{d.name}`"),
        ("kind", lambda d: d.kind),
        ("what", lambda d: d.description),
        ("size", lambda d: d.size),
        ("licence", lambda d: d.licence),
        ("install", lambda d: f"`{d.install}`"),
    ),
)


def _fashion_splits(n_train: int, n_test: int, seed: int) -> tuple[LabelledSet, LabelledSet]:
    return (
        _take(load_fashion_mnist("train"), n_train, seed, "train"),
        _take(load_fashion_mnist("test"), n_test, seed, "test"),
    )


def _cifar_splits(n_train: int, n_test: int, seed: int) -> tuple[LabelledSet, LabelledSet]:
    full = load_cifar10()  # test images only: probe-train and test are disjoint draws
    return _take(full, n_train, seed, "train"), _take(full, n_test, seed, "test", n_train)


def _text_domain_splits(n_train: int, n_test: int, seed: int) -> tuple[LabelledSet, LabelledSet]:
    train, test = load_text_domain(seed)
    return _take(train, n_train, seed, "train"), _take(test, n_test, seed, "test")


def _files_present(find: Callable[[], Path]) -> Callable[[], bool]:
    def available() -> bool:
        try:
            return find().is_file()
        except DepthlensError:
            return False

    return available


LABELLED.register(
    LabelledData(
        "fashion-mnist",
        "image",
        "60,000 train + 10,000 test, 28x28 grey, 10 classes",
        "MIT (Zalando Research)",
        FASHION_INSTALL,
        "Fashion-MNIST (Debian dataset-fashion-mnist)",
        _fashion_splits,
        _files_present(lambda: fashion_dir() / "t10k-labels-idx1-ubyte.gz"),
    )
)
LABELLED.register(
    LabelledData(
        "cifar10",
        "image",
        "10,000 test, 32x32 RGB, 10 classes",
        "Krizhevsky 2009; via BIG-bench (Apache-2.0)",
        BIGBENCH_INSTALL,
        "CIFAR-10 test images inside BIG-bench (optional)",
        _cifar_splits,
        _files_present(cifar_task_file),
    )
)
LABELLED.register(
    LabelledData(
        "text-domain",
        "text",
        "~3.6k train + ~1.5k test sentences, balanced, 2 classes",
        "wiki CC BY-SA 3.0; news: gensim test data (LGPL-2.1)",
        "pip install --no-deps gensim==4.4.0",
        "sentence domain: wiki vs news, split by document",
        _text_domain_splits,
        lambda: importlib.util.find_spec("gensim") is not None,
    )
)


def load_labelled(
    name: str, n_train: int, n_test: int, seed: int = 0, corruptions: tuple[str, ...] | None = None
) -> LabelledSplits:
    """Train/test splits of ``name`` capped and seeded, and the test split under corruptions."""
    from depthlens.data import corrupt

    train, test = LABELLED.get(name).splits(n_train, n_test, seed)
    if int(torch.unique(train.labels).numel()) < 2:
        raise DepthlensError(f"the {name} training sample has one class only; raise --max-samples")
    image = test.images is not None
    table = corrupt.IMAGE_CORRUPTIONS if image else corrupt.TEXT_CORRUPTIONS
    names = tuple(table) if corruptions is None else corruptions
    ood = {}
    for k, c in enumerate(names):
        info = {"corruption": c, "what": table[c][1] if c in table else "?", "seed": seed + 1 + k}
        if image:
            assert test.images is not None
            imgs = corrupt.corrupt_images(test.images, c, seed + 1 + k)
            ood[c] = LabelledSet(
                name, test.labels, imgs, None, test.class_names, {**test.identity, **info}
            )
        else:
            assert test.texts is not None
            txt = corrupt.corrupt_texts(test.texts, c, seed + 1 + k)
            ood[c] = LabelledSet(
                name, test.labels, None, txt, test.class_names, {**test.identity, **info}
            )
    return LabelledSplits(train, test, ood)


def labelled_available(name: str) -> bool:
    """Whether the files of a labelled dataset are on this machine (cheap check)."""
    return LABELLED.get(name).available()


def list_labelled() -> list[dict[str, Any]]:
    """One row per labelled dataset: name, kind, size, licence, available, install."""
    return [
        {
            "name": d.name,
            "kind": d.kind,
            "size": d.size,
            "licence": d.licence,
            "install": d.install,
            "description": d.description,
            "available": d.available(),
        }
        for d in LABELLED.values()
    ]
