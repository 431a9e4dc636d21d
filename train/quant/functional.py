"""Sign and straight-through estimators (STEs): the numerics every quantizer is built from.

``sign`` follows LCE and Larq: 0 maps to +1 (never ``torch.sign``). The STEs are autograd
functions used only while training; in eval mode quantizers call ``sign`` directly, which ONNX
exports as ``GreaterOrEqual`` + ``Where``, the form LCE turns into ``LceQuantize``.
"""

from __future__ import annotations

from typing import Any

import torch


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0`` (0 included), else -1, in ``x``'s dtype."""
    out = torch.where(x >= 0, 1.0, -1.0)
    return out if out.dtype == x.dtype else out.to(x.dtype)  # no Cast node in float32 exports


class _SteSign(torch.autograd.Function):
    """Forward ``sign``; backward the clipped identity ``grad * 1[|x| <= clip]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


class _ApproxSign(torch.autograd.Function):
    """Forward ``sign``; backward ApproxSign (Bi-Real Net) ``grad * max(0, 2 - 2|x|)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2.0 - 2.0 * x.abs()).clamp_min(0.0)


def ste_sign(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """``sign(x)`` with the clipped-identity gradient (Larq ``ste_sign``)."""
    return _SteSign.apply(x, clip)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` with the ApproxSign gradient (Larq ``approx_sign``)."""
    return _ApproxSign.apply(x)


def channel_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale ``alpha_o = mean|w_o|`` (detached), shaped to broadcast over ``weight``."""
    dims = tuple(range(1, weight.dim()))
    return weight.detach().abs().mean(dim=dims, keepdim=True)
