"""Binary networks written the way public PyTorch BNN code writes them (our own code following the
published recipes), for the convert tests: torch is used here only to build and export them.

- ReActNet-style (Liu et al. 2020): learnable-bias sign (RSign) with Bi-Real's piecewise-quadratic
  straight-through estimator written as ``sign.detach() - soft.detach() + soft``; weights
  ``mean|w| * sign(w)`` with the clipped-identity detach trick; BN, shortcut, RPReLU.
- Bi-Real-style (Liu et al. 2018): the same activation estimator without the learnable bias,
  ``BN(conv(sign(x))) + x`` blocks, average-pool + 1x1 float conv shortcuts on downsampling.
- XNOR-style (Rastegari et al. 2016): BN -> sign as a custom ``autograd.Function`` -> conv whose
  weights are ``mean|w|`` per output channel times ``sign(w)``, computed in ``forward`` -> ReLU.
- Brevitas: ``QuantIdentity`` with a bipolar activation quantizer and ``QuantConv2d`` with a binary
  weight quantizer, exported to QONNX (``BipolarQuant`` nodes).

Every net covers binary convs at stride 1 and 2 on even (28, 14) and odd (7) inputs; the convs use
PyTorch's default zero padding, and the ReActNet-style net also has one ``F.pad(value=1)`` conv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = 32
CLASSES = 10
INPUT_SHAPE = (1, 1, 28, 28)
# (stride, padding) of the binary 3x3 convs and their input sizes: 28 s1, 28 s2, 14 s2, 7 s1, 7 s2.
BLOCKS = ((1, "zero"), (2, "zero"), (2, "one"), (1, "zero"), (2, "zero"))


def soft_sign_estimate(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's piecewise-quadratic approximation of sign, written with comparison masks."""
    below_m1, below_0, below_1 = (x < -1).float(), (x < 0).float(), (x < 1).float()
    return (-below_m1 + (x * x + 2 * x) * (below_0 - below_m1) + (2 * x - x * x) * (below_1 - below_0)
            + (1 - below_1))


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) forward, the soft estimate's gradient backward (identity at inference)."""
    soft = soft_sign_estimate(x)
    return torch.sign(x).detach() - soft.detach() + soft


def clipped_mean_sign(w: torch.Tensor) -> torch.Tensor:
    """ReActNet's weights: ``mean|w|`` per output channel times sign(w), clipped-identity estimator."""
    scale = w.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
    clipped = torch.clamp(w, -1.0, 1.0)
    return (scale * torch.sign(w)).detach() - clipped.detach() + clipped


class BinActive(torch.autograd.Function):
    """XNOR-Net's activation binarizer: sign forward, gradient cancelled where |x| > 1."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001 (autograd signature)
        ctx.save_for_backward(x)
        return x.sign()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class BinaryConv(nn.Conv2d):
    """A conv whose weight is binarized in ``forward`` by ``binarize`` and whose input is padded with
    ``pad_value`` (0: PyTorch's zero padding through ``padding``; 1: ``F.pad`` with +1)."""

    def __init__(self, cin: int, cout: int, stride: int, padding: str, binarize) -> None:
        super().__init__(cin, cout, 3, stride=stride, padding=1 if padding == "zero" else 0, bias=False)
        self.one_pad = padding == "one"
        self.binarize = binarize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_pad:
            x = F.pad(x, (1, 1, 1, 1), value=1.0)
        return F.conv2d(x, self.binarize(self.weight), None, self.stride, self.padding)


class RPReLU(nn.Module):
    """ReActNet's shifted PReLU: ``prelu(x - gamma) + zeta`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(0.1 * torch.randn(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, 0.25)
        self.zeta = nn.Parameter(0.1 * torch.randn(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(x - self.gamma) + self.zeta


def _shortcut(size: int, stride: int) -> nn.Module:
    """Identity at stride 1; a 2x2 average pool on even inputs, a 1x1 stride-2 float conv on odd ones."""
    if stride == 1:
        return nn.Identity()
    if size % 2 == 0:
        return nn.AvgPool2d(2)
    return nn.Conv2d(CHANNELS, CHANNELS, 1, stride=2, bias=False)


def _stem(relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(1, CHANNELS, 3, padding=1, bias=False), nn.BatchNorm2d(CHANNELS)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


def _sizes() -> list[int]:
    sizes, size = [], INPUT_SHAPE[-1]
    for stride, _ in BLOCKS:
        sizes.append(size)
        size = (size - 1) // stride + 1
    return sizes


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(CHANNELS, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class ReActBlock(nn.Module):
    def __init__(self, size: int, stride: int, padding: str) -> None:
        super().__init__()
        self.move = nn.Parameter(0.1 * torch.randn(1, CHANNELS, 1, 1))  # RSign's learnable threshold
        self.conv = BinaryConv(CHANNELS, CHANNELS, stride, padding, clipped_mean_sign)
        self.bn = nn.BatchNorm2d(CHANNELS)
        self.shortcut = _shortcut(size, stride)
        self.act = RPReLU(CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(approx_sign(x + self.move)))
        return self.act(y + self.shortcut(x))


class BiRealBlock(nn.Module):
    def __init__(self, size: int, stride: int, padding: str) -> None:
        super().__init__()
        self.conv = BinaryConv(CHANNELS, CHANNELS, stride, padding,
                               lambda w: w.abs().mean(dim=(1, 2, 3), keepdim=True) * torch.sign(w))
        self.bn = nn.BatchNorm2d(CHANNELS)
        self.shortcut = _shortcut(size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(approx_sign(x))) + self.shortcut(x)


def _xnor_weight(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net's per-output-channel scale alpha = mean|w|, times sign(w), computed in forward."""
    alpha = w.abs().flatten(1).mean(dim=1).view(-1, 1, 1, 1)
    return alpha * w.sign()


class XnorBlock(nn.Module):
    activation = staticmethod(BinActive.apply)

    def __init__(self, size: int, stride: int, padding: str) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(CHANNELS)
        self.conv = BinaryConv(CHANNELS, CHANNELS, stride, padding, _xnor_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(self.activation(self.bn(x))))


class StyleNet(nn.Module):
    """Stem (float conv, BN, optional ReLU), five binary blocks of one style (``BLOCKS``), global pool,
    linear head."""

    def __init__(self, block: type[nn.Module], padding_override: str | None = None, stem_relu: bool = True) -> None:
        super().__init__()
        self.stem = _stem(stem_relu)
        self.blocks = nn.Sequential(*(block(size, stride, padding_override or padding)
                                      for size, (stride, padding) in zip(_sizes(), BLOCKS, strict=True)))
        self.head = Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def reactnet_style() -> nn.Module:
    return StyleNet(ReActBlock)


def bireal_style(stem_relu: bool = False) -> nn.Module:
    """Bi-Real's stem has no ReLU: with one, half the first sign's inputs are exactly 0 (see sign_zero)."""
    return StyleNet(BiRealBlock, padding_override="zero", stem_relu=stem_relu)


def xnor_style() -> nn.Module:
    return StyleNet(XnorBlock, padding_override="zero")


def brevitas_style() -> nn.Module:
    """The same five binary convs with brevitas quantizers (bipolar activations and weights)."""
    import brevitas.nn as qnn
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    class Block(nn.Module):
        def __init__(self, size: int, stride: int, padding: str) -> None:
            super().__init__()
            self.sign = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False)
            self.conv = qnn.QuantConv2d(CHANNELS, CHANNELS, 3, stride=stride, padding=1, bias=False,
                                        weight_quant=SignedBinaryWeightPerTensorConst)
            self.bn = nn.BatchNorm2d(CHANNELS)
            self.shortcut = _shortcut(size, stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(self.sign(x))) + self.shortcut(x)

    return StyleNet(Block, padding_override="zero", stem_relu=False)  # no ReLU before the first sign: as Bi-Real


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, batches: int = 4) -> nn.Module:
    """Set every BN's running statistics from real images (train-mode forward passes, no gradient),
    so that the pre-sign activations are distributed as in a trained net; returns the model in eval mode."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for chunk in images.chunk(batches):
            model(chunk)
    return model.eval()


def export(model: nn.Module, path: Path) -> Path:
    """Plain ``torch.onnx.export`` as a user writes it (TorchScript exporter, opset 17, batch 1)."""
    with torch.no_grad():
        torch.onnx.export(model.eval(), (torch.zeros(INPUT_SHAPE),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
    return path


def export_qonnx(model: nn.Module, path: Path) -> Path:
    from brevitas.export import export_qonnx as brevitas_export

    with torch.no_grad():
        brevitas_export(model.eval(), torch.zeros(INPUT_SHAPE), export_path=str(path), dynamo=False)
    return path


def fashion_mnist_test(limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` Fashion-MNIST test images (float32 NCHW, normalised) and labels."""
    from train.data import fashion_mnist_candidates, find_idx_files, load_idx_pair

    files = next(f for f in map(find_idx_files, fashion_mnist_candidates(None)) if f is not None)
    images, labels = load_idx_pair(files["test_images"], files["test_labels"], num_classes=10)
    x = (images[:limit].numpy().astype(np.float32) / 255.0 - 0.2860) / 0.3530
    return x.astype(np.float32), labels[:limit].numpy()


def scaled_soft_sign(x: torch.Tensor) -> torch.Tensor:
    """An estimator that is NOT the identity at inference: ``sign(x) - tanh(2x) + 0.5 tanh(2x)``."""
    soft = torch.tanh(2 * x)
    return (torch.sign(x) - soft).detach() + 0.5 * soft


class SoftSignBlock(XnorBlock):
    """An XNOR-style block whose activation is the scaled soft sign."""

    activation = staticmethod(scaled_soft_sign)


def soft_sign_net() -> nn.Module:
    return StyleNet(SoftSignBlock, padding_override="zero")
