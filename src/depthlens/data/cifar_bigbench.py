"""Decode BIG-bench's ``cifar10_classification`` task (base64 PNG per example) into tensors.

The task holds the 10,000 CIFAR-10 test images (Krizhevsky 2009); the decoded uint8
tensor is cached beside the task so later loads skip the PNG decoding.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
from pathlib import Path

import torch

from depthlens.errors import DepthlensError


def _label(scores: object, classes: tuple[str, ...]) -> int:
    d = ast.literal_eval(scores) if isinstance(scores, str) else scores
    if not isinstance(d, dict):
        raise DepthlensError("unexpected target_scores in the CIFAR-10 task")
    hits = [k for k, v in d.items() if v == 1]
    return classes.index(hits[0])


def read_cifar_task(path: Path, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from the base64 task JSON."""
    key = hashlib.sha256(f"{path.resolve()}|{path.stat().st_size}".encode()).hexdigest()[:16]
    cache = path.parent / f".depthlens-decoded-{key}.pt"
    if cache.is_file():
        obj = torch.load(cache, weights_only=True)
        return obj["images"], obj["labels"]
    from PIL import Image

    examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    images = torch.empty(len(examples), 3, 32, 32, dtype=torch.uint8)
    labels = torch.empty(len(examples), dtype=torch.long)
    for i, ex in enumerate(examples):
        with Image.open(io.BytesIO(base64.b64decode(ex["input"]))) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
        images[i] = arr.view(32, 32, 3).permute(2, 0, 1)
        labels[i] = _label(ex["target_scores"], classes)
    try:
        torch.save({"images": images, "labels": labels}, cache)
    except OSError:
        pass  # an unwritable cache only costs time next time
    return images, labels
