"""Backbones: shapes, parameter counts, gradients, layer order, keep_float, options, MAC counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from train.models import available_models, build_model, model_options
from train.models.stats import count_macs

ARCHS = ["reactnet", "mobilenetv2", "resnet18", "tiny"]
# Small widths keep the CPU cost of the shape/gradient tests low; the layouts are the same.
TEST_WIDTH = {"reactnet": 0.5, "mobilenetv2": 0.5, "resnet18": 0.25, "tiny": 1.0}


def _leaf_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every leaf module in the order the forward pass calls them."""
    calls: list[tuple[str, nn.Module]] = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.append((name, m)))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_available_models() -> None:
    assert available_models() == sorted(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("channels", "size", "classes"), [(1, 28, 10), (3, 32, 100), (3, 64, 7)])
def test_output_shape(arch: str, channels: int, size: int, classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(
        arch, num_classes=classes, in_channels=channels, image_size=size, width=TEST_WIDTH[arch]
    )
    out = model.eval()(torch.randn(2, channels, size, size))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["mobilenetv2", "reactnet"])
def test_imagenet_size_forward(arch: str) -> None:
    model = build_model(arch, num_classes=1000, in_channels=3, image_size=224)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts() -> None:
    assert (
        _num_params(build_model("mobilenetv2", num_classes=1000, in_channels=3, image_size=224)) == 3_504_872
    )
    assert _num_params(build_model("resnet18", num_classes=10, in_channels=3, image_size=32)) == 11_173_962
    assert _num_params(build_model("tiny", num_classes=10, in_channels=1, image_size=28)) < 25_000


@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_every_parameter(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=1, image_size=28, width=TEST_WIDTH[arch]).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("arch", "size"), [(arch, 28) for arch in ARCHS] + [(arch, 224) for arch in ARCHS[:3]]
)
def test_layer_contract(arch: str, size: int) -> None:
    """Modules registered in forward order; keep_float names real conv/linear layers (stem, classifier);
    every other regular conv is bias-free and feeds a BatchNorm directly."""
    model = build_model(arch, num_classes=10, in_channels=3, image_size=size, width=TEST_WIDTH[arch])
    calls = _leaf_calls(model, torch.randn(1, 3, size, size))
    called = [name for name, _ in calls]
    registered = [name for name, m in model.named_modules() if not list(m.children())]
    assert called == [name for name in registered if name in set(called)]

    modules = dict(model.named_modules())
    weighted = [name for name, m in calls if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert model.keep_float <= set(weighted)
    assert weighted[0] in model.keep_float and isinstance(modules[weighted[0]], nn.Conv2d)
    assert weighted[-1] in model.keep_float and isinstance(modules[weighted[-1]], nn.Linear)
    eligible = [
        i
        for i, (name, m) in enumerate(calls)
        if isinstance(m, nn.Conv2d) and m.groups == 1 and name not in model.keep_float
    ]
    assert eligible
    for i in eligible:
        conv = calls[i][1]
        assert conv.bias is None, calls[i][0]
        assert isinstance(calls[i + 1][1], nn.BatchNorm2d), calls[i][0]
        assert calls[i + 1][1].num_features == conv.out_channels


def test_resnet18_keeps_downsample_shortcuts_float() -> None:
    model = build_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    shortcuts = {
        name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    }
    assert len(shortcuts) == 3
    assert shortcuts <= model.keep_float
    assert model.keep_float == shortcuts | {"stem.0", "classifier"}


def test_resnet18_stems() -> None:
    small = build_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    large = build_model("resnet18", num_classes=10, in_channels=3, image_size=224)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.modules())
    assert large.stem[0].kernel_size == (7, 7) and large.stem[0].stride == (2, 2)
    assert isinstance(large.stem[3], nn.MaxPool2d)


def test_reactnet_layout() -> None:
    small = build_model("reactnet", num_classes=10, in_channels=1, image_size=28)
    large = build_model("reactnet", num_classes=1000, in_channels=3, image_size=224)
    assert small.stem[0].stride == (1, 1) and large.stem[0].stride == (2, 2)
    for model in (small, large):
        binary = [
            m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in model.keep_float
        ]
        assert all(m.in_channels % 32 == 0 for m in binary)
        assert all(m.groups == 1 for m in binary)
    # The default Fashion-MNIST net: 32 ch @28 px, 64 ch @14 px, 128 ch @7 px.
    x = small.stem(torch.randn(1, 1, 28, 28))
    assert x.shape == (1, 32, 28, 28)
    shapes = []
    for block in small.blocks:
        x = block(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes[0] == (64, 14, 14) and shapes[-1] == (128, 7, 7)
    # A C->2C block is two parallel 1x1 C->C convs, each with its BN.
    assert len(small.blocks[0].pointwise) == 2 and small.blocks[0].pointwise[0][0].out_channels == 32


def test_reactnet_options() -> None:
    model = build_model(
        "reactnet",
        num_classes=5,
        in_channels=3,
        image_size=32,
        stage_channels=[64, 64],
        strides=[2, 2],
        dropout=0.1,
    )
    assert len(model.blocks) == 2 and model.dropout.p == 0.1
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="one stride per block"):
        build_model(
            "reactnet", num_classes=5, in_channels=3, image_size=32, stage_channels=[64], strides=[1, 2]
        )
    with pytest.raises(ValueError, match="keep or double"):
        build_model("reactnet", num_classes=5, in_channels=3, image_size=32, stage_channels=[96], strides=[1])
    with pytest.raises(ValueError, match="dropout"):
        build_model("reactnet", num_classes=5, in_channels=3, image_size=32, dropout=1.5)
    half = build_model("reactnet", num_classes=5, in_channels=3, image_size=32, width=0.5)
    assert half.stem[0].out_channels == 16 and half.classifier.in_features == 64


def test_mobilenetv2_width_and_depthwise() -> None:
    model = build_model("mobilenetv2", num_classes=10, in_channels=3, image_size=224, width=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.out_channels % 8 == 0 for m in convs)
    assert model.classifier.in_features == 1280
    assert sum(m.groups > 1 for m in convs) == 17
    wide = build_model("mobilenetv2", num_classes=10, in_channels=3, image_size=224, width=1.4)
    assert wide.classifier.in_features == 1792
    small = build_model("mobilenetv2", num_classes=10, in_channels=3, image_size=32)
    assert small.features[0][0].stride == (1, 1)
    with torch.no_grad():
        assert small.eval().features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_unknown_arch_and_options() -> None:
    with pytest.raises(ValueError, match="available: mobilenetv2, reactnet, resnet18, tiny"):
        build_model("vgg", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(ValueError, match=r"unknown option\(s\) depth .*valid options: dropout"):
        build_model("mobilenetv2", num_classes=10, in_channels=3, image_size=32, depth=3)
    with pytest.raises(ValueError, match="valid options: none"):
        build_model("tiny", num_classes=10, in_channels=3, image_size=32, dropout=0.1)
    assert model_options("reactnet") == ["stage_channels", "strides", "stem_channels", "dropout"]
    for bad in ({"num_classes": 0}, {"in_channels": 1.5}, {"image_size": 4}, {"width": 0}):
        kwargs = {"num_classes": 10, "in_channels": 3, "image_size": 32, **bad}
        with pytest.raises(ValueError, match="must be"):
            build_model("tiny", **kwargs)


def test_count_macs_tiny_by_hand() -> None:
    model = build_model("tiny", num_classes=10, in_channels=3, image_size=16).train()
    macs = count_macs(model, (3, 16, 16))
    assert macs == {
        "stem": 16 * 16 * 32 * 3 * 9,
        "conv1": 16 * 16 * 32 * 32 * 9,
        "conv2": 8 * 8 * 32 * 32 * 9,
        "conv3": 8 * 8 * 32 * 32,
        "classifier": 32 * 10,
    }
    assert model.training
    assert count_macs(model, (4, 3, 16, 16)) == macs
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(model, (16, 16))


def test_count_macs_depthwise_and_reactnet_default() -> None:
    model = build_model("mobilenetv2", num_classes=1000, in_channels=3, image_size=224)
    macs = count_macs(model, (3, 224, 224))
    depthwise = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    # The first depthwise conv: 32 channels at 112x112, 9 MACs per output.
    assert macs[depthwise[0]] == 112 * 112 * 32 * 9
    assert 290e6 < sum(macs.values()) < 310e6  # MobileNetV2-1.0: ~300 M MACs
    default = count_macs(build_model("reactnet", num_classes=10, in_channels=1, image_size=28), (1, 28, 28))
    assert 20e6 < sum(default.values()) < 80e6
