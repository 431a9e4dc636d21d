"""Quantizers: small ``nn.Module``s reachable by string name through one registry.

Activation quantizers binarize ``x - tau`` with an optional learnable per-channel threshold
``tau`` (ReActNet's RSign; needed after non-negative activations, else every input is +1).
Weight quantizers binarize the latent weight, optionally with the per-output-channel scale
``alpha_o = mean|w_o|``. In training mode the STEs of ``functional`` carry the gradient; in eval
mode every quantizer is the plain ``sign`` so that the eval forward is the exported form. Each
quantizer declares the bits it produces (``precision``, as larq quantizers do); ``QuantConv2d``
reads its layer's ``bitat_edge.precision.Precision`` from them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from train.quant import functional as qf
from train.registry import Registry


class Quantizer(nn.Module):
    """Base class: a named, configurable binarizer."""

    name: ClassVar[str] = ""
    role: ClassVar[str] = "any"  # "activation", "weight" or "any": what the quantizer may binarize
    precision: ClassVar[int] = 1  # bits of what it produces (1: +/-1, or +/-alpha per channel)

    def __init__(self, channels: int = 0) -> None:
        super().__init__()
        if channels < 0:
            raise ValueError(f"quantizer {self.name!r}: channels must be >= 0, got {channels}")
        self.channels = channels
        # The learnable threshold tau (one per input channel), subtracted before the sign.
        self.threshold = nn.Parameter(torch.zeros(1, channels, 1, 1)) if channels else None

    def _ste(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            x = x - self.threshold
        return self._ste(x) if self.training else qf.sign(x)

    def options(self) -> dict[str, Any]:
        """The constructor arguments (for ``to_config``)."""
        return {"channels": self.channels}

    def to_config(self) -> dict[str, Any]:
        """A plain dict that ``from_config`` turns back into an equal quantizer."""
        return {"name": self.name, **self.options()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Quantizer:
        """Build a quantizer from ``to_config``'s dict (the registry picks the class by ``name``)."""
        return from_config(config)


_quantizers: Registry[type[Quantizer]] = Registry("quantizer")
register = _quantizers.register
available = _quantizers.available
get = _quantizers.get


def check_role(name: str, role: str) -> str:
    """``name`` if it is a registered quantizer that may binarize ``role`` ("activation" or "weight")."""
    cls = get(name)
    if cls.role not in (role, "any"):
        fits = ", ".join(n for n in available() if get(n).role in (role, "any"))
        raise ValueError(f"quantizer {name!r} binarizes {cls.role}s, not {role}s; for the {role} use one of: {fits}")
    return name


def from_config(config: dict[str, Any]) -> Quantizer:
    """Build the quantizer a ``to_config`` dict describes."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"a quantizer config must be a dict with a 'name' key, got {config!r}")
    options = {k: v for k, v in config.items() if k != "name"}
    cls = get(config["name"])
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"quantizer {config['name']!r}: bad options {options!r} ({exc})") from None


@register
class SteSign(Quantizer):
    """``sign`` with the clipped-identity STE ``grad * 1[|x| <= clip]`` (weights or activations)."""

    name = "ste_sign"

    def __init__(self, channels: int = 0, clip: float = 1.0) -> None:
        super().__init__(channels)
        self.clip = float(clip)

    def _ste(self, x: torch.Tensor) -> torch.Tensor:
        return qf.ste_sign(x, self.clip)

    def options(self) -> dict[str, Any]:
        return {"channels": self.channels, "clip": self.clip}


@register
class ApproxSign(Quantizer):
    """``sign`` with the ApproxSign gradient ``grad * max(0, 2 - 2|x|)`` (activations)."""

    name = "approx_sign"
    role = "activation"

    def _ste(self, x: torch.Tensor) -> torch.Tensor:
        return qf.approx_sign(x)


@register
class ScaledApproxSign(Quantizer):
    """ApproxSign applied to ``x / s``, ``s`` = the batch's per-channel mean ``|x|`` (detached): the
    gradient window follows the input's magnitude (upper layers' inputs are mostly outside
    ``|x| <= 1``); the chain rule adds the ``1 / s``. The sign, hence the forward in eval mode and
    the exported form, is that of ``x`` (``s > 0``)."""

    name = "scaled_approx_sign"
    role = "activation"

    def _ste(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, *range(2, x.dim()))
        scale = x.detach().abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
        return qf.approx_sign(x / scale)


@register
class MagnitudeAwareSign(Quantizer):
    """Weights: ``alpha_o * sign(w)`` with ``alpha_o = mean|w_o|`` detached, clipped-identity STE."""

    name = "magnitude_aware_sign"
    role = "weight"

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__(0)
        self.clip = float(clip)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        alpha = qf.channel_scale(w)
        return alpha * (qf.ste_sign(w, self.clip) if self.training else qf.sign(w))

    def options(self) -> dict[str, Any]:
        return {"clip": self.clip}
