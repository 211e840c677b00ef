"""Vision networks: MobileNetV2 with torchvision's names, pooled block features, bad images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from depthlens.errors import DepthlensError
from depthlens.models.vision import (
    MobileNetV2,
    VisionSpec,
    load_mobilenet_v2,
    mobilenet_v2_spec,
    preprocess,
    wrap_vision,
)
from depthlens.paths import default_cache_dir
from depthlens.repr.features import extractor_for, image_features


def _toy() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2))


def test_any_module_with_layer_paths_gives_pooled_features() -> None:
    torch.manual_seed(0)
    net = _toy()
    vm = wrap_vision(net, None, VisionSpec("toy", ("0", "2"), input_size=8), "toy")
    imgs = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    feats = image_features(extractor_for(vm), imgs)
    x = preprocess(imgs.float() / 255, vm.spec)
    with torch.no_grad():  # naive: run the layers by hand and average over space
        a = net[0](x)
        b = net[2](net[1](a))
    assert [f.shape for f in feats] == [(5, 4), (5, 6)]
    assert torch.allclose(feats[0], a.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(feats[1], b.mean(dim=(2, 3)), atol=1e-6)


def test_bad_images_and_layer_paths_are_one_line_errors() -> None:
    vm = wrap_vision(_toy(), None, VisionSpec("toy", ("0",), input_size=8), "toy")
    with pytest.raises(DepthlensError, match="1 or 3 channels"):
        image_features(extractor_for(vm), torch.zeros(2, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(DepthlensError, match="1 or 3 channels"):
        image_features(extractor_for(vm), torch.zeros(8, 8, dtype=torch.uint8))
    with pytest.raises(DepthlensError, match="not a submodule"):
        wrap_vision(_toy(), None, VisionSpec("toy", ("features.9",)), "toy")
    with pytest.raises(DepthlensError, match="does not fit"):
        wrap_vision(_toy(), {"bogus.weight": torch.zeros(1)}, VisionSpec("toy", ("0",)), "toy")


def test_mobilenet_v2_has_torchvisions_parameter_names_and_19_blocks() -> None:
    net = MobileNetV2()
    keys = set(net.state_dict())
    for k in (
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.0.0.weight",
        "features.2.conv.3.running_var",
        "features.18.1.bias",
        "classifier.1.weight",
    ):
        assert k in keys, k
    assert len(mobilenet_v2_spec().layers) == 19 == len(net.features)
    assert sum(p.numel() for p in net.parameters()) == 3_504_872  # torchvision's count


@pytest.mark.e2e
def test_packaged_weights_load_strictly() -> None:
    vm = load_mobilenet_v2()
    sd = torch.load(vm.path, weights_only=True)
    assert set(sd) == set(vm.model.state_dict())
    MobileNetV2().load_state_dict(sd, strict=True)


PHOTOS = default_cache_dir() / "images" / "skimage"
# ImageNet-1k indices: 281-285 domestic cats; 504 coffee mug, 967 espresso, 968 cup;
# 665 moped, 670 motor scooter.
EXPECTED = {
    "chelsea.png": {281, 282, 283, 284, 285},
    "coffee.png": {504, 967, 968},
    "motorcycle_left.png": {665, 670},
}


@pytest.mark.e2e
@pytest.mark.skipif(
    not (PHOTOS / "chelsea.png").is_file(),
    reason="sample photos absent: run scripts/setup-datasets.sh (scripts/test.sh does as root)",
)
def test_packaged_mobilenet_recognises_real_photos() -> None:
    from PIL import Image

    vm = load_mobilenet_v2()
    for name, want in EXPECTED.items():
        with Image.open(Path(PHOTOS, name)) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            x = arr.view(im.height, im.width, 3).permute(2, 0, 1)[None]
        with torch.no_grad():
            top5 = vm.model(preprocess(x.float() / 255, vm.spec)).topk(5).indices[0].tolist()
        assert want & set(top5), (name, top5)
        assert top5[0] in want, (name, top5)
