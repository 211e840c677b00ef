"""Seeded corruptions for out-of-distribution splits, written with torch ops only.

Images are uint8 (N, C, H, W) in and out; the corruptions follow the common families of
Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (Gaussian noise, blur, contrast), plus rotation. Text
corruptions change the surface form of a sentence but not its domain.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Callable

import torch
from torch.nn import functional as F

from depthlens.errors import DepthlensError

ImageFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def gaussian_noise(x: torch.Tensor, gen: torch.Generator, sigma: float = 0.2) -> torch.Tensor:
    """Add N(0, σ²) noise per pixel (σ in units of the [0, 1] range)."""
    f = _to_float(x)
    return _to_uint8(f + sigma * torch.randn(f.shape, generator=gen))


def blur(x: torch.Tensor, gen: torch.Generator, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflect padding)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-(t * t) / (2 * sigma * sigma))
    k1 = k1 / k1.sum()
    f = _to_float(x)
    c = f.shape[1]
    kh = k1.view(1, 1, 1, -1).expand(c, 1, 1, -1)  # separable: rows then columns
    kv = k1.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    f = F.conv2d(F.pad(f, (r, r, 0, 0), mode="reflect"), kh, groups=c)
    f = F.conv2d(F.pad(f, (0, 0, r, r), mode="reflect"), kv, groups=c)
    return _to_uint8(f)


def contrast(x: torch.Tensor, gen: torch.Generator, factor: float = 0.3) -> torch.Tensor:
    """Shrink each image towards its mean intensity: (x − mean)·factor + mean."""
    f = _to_float(x)
    m = f.mean(dim=(1, 2, 3), keepdim=True)
    return _to_uint8((f - m) * factor + m)


def rotation(x: torch.Tensor, gen: torch.Generator, degrees: float = 30.0) -> torch.Tensor:
    """Rotate each image by ±``degrees`` (random sign per image), zero fill outside."""
    f = _to_float(x)
    n = f.shape[0]
    sign = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
    a = sign * math.radians(degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(f.shape), align_corners=False)
    return _to_uint8(F.grid_sample(f, grid, align_corners=False, padding_mode="zeros"))


IMAGE_CORRUPTIONS: dict[str, tuple[ImageFn, str]] = {
    "noise": (gaussian_noise, "Gaussian noise, sigma 0.2 of the intensity range"),
    "blur": (blur, "Gaussian blur, sigma 1 pixel at the native resolution"),
    "contrast": (contrast, "contrast x0.3 around each image's mean"),
    "rotate": (rotation, "rotation by +-30 degrees (random sign), zero fill"),
}


_PUNCT = str.maketrans("", "", string.punctuation)


def lower_nopunct(text: str, rng: random.Random) -> str:
    """Lower-case, punctuation removed."""
    return re.sub(r"\s+", " ", text.lower().translate(_PUNCT)).strip()


def word_dropout(text: str, rng: random.Random, p: float = 0.3) -> str:
    """Drop each word with probability ``p`` (at least one word kept)."""
    words = text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


TEXT_CORRUPTIONS: dict[str, tuple[Callable[[str, random.Random], str], str]] = {
    "lower-nopunct": (lower_nopunct, "lower-cased, punctuation removed"),
    "word-dropout": (word_dropout, "each word dropped with p = 0.3"),
}


def corrupt_images(x: torch.Tensor, name: str, seed: int) -> torch.Tensor:
    """Apply the image corruption ``name`` to uint8 images ``x`` with a seeded generator."""
    if name not in IMAGE_CORRUPTIONS:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("image corruption", name, list(IMAGE_CORRUPTIONS)))
    return IMAGE_CORRUPTIONS[name][0](x, torch.Generator().manual_seed(seed))


def corrupt_texts(texts: tuple[str, ...], name: str, seed: int) -> tuple[str, ...]:
    """Apply the text corruption ``name`` to each sentence, seeded."""
    if name not in TEXT_CORRUPTIONS:
        from depthlens.registry import unknown_choice

        raise DepthlensError(unknown_choice("text corruption", name, list(TEXT_CORRUPTIONS)))
    fn = TEXT_CORRUPTIONS[name][0]
    rng = random.Random(seed)
    return tuple(fn(t, rng) for t in texts)
