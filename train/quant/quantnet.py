"""QuantNet's meta-quantizer, our reading (METHODS.md §3.2; the paper, arXiv:2009.04626, gives no code
and no equation beyond its abstract).

One small element-wise network, shared by every binarized layer, maps each standardized latent
weight to a soft binary value; no straight-through estimator is used for the weights:

    w~ = w / (std(W) + eps),  z = V2 tanh(V1 w~ + c1) + c2,  u = tanh(beta z),
    W_train = alpha * u,      alpha_c = mean_k |W_c,k|       (per output channel)

``beta`` is annealed upwards by the method, so ``u`` approaches ``sgn(z)``; the deploy (eval) weight
is exactly ``alpha * sgn(z)``, the +/-scale-per-channel form LCE runs. The network starts near the
identity on [-3, 3] (fitted by ``MetaQuantizer.fit_identity``), so at ``beta = 1`` the layer sees
``alpha * tanh(w~)``.
"""

from __future__ import annotations

import torch
from torch import nn

from train.quant import functional as qf
from train.quant.quantizers import Quantizer

STD_EPS = 1e-8


class MetaQuantizer(nn.Module):
    """The shared element-wise network ``z = V2 tanh(V1 w~ + c1) + c2`` and the current ``beta``."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.inner = nn.Linear(1, hidden)
        self.outer = nn.Linear(hidden, 1)
        self.register_buffer("beta", torch.tensor(1.0))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``z`` for every element of ``w`` (any shape)."""
        return self.outer(torch.tanh(self.inner(w.reshape(-1, 1)))).reshape(w.shape)

    @torch.enable_grad()
    def fit_identity(self, span: float = 3.0, steps: int = 400, seed: int = 0) -> float:
        """Fit ``z(w) = w`` on ``[-span, span]`` from a seeded start (deterministic); return the final
        mean squared error."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in (self.inner, self.outer):
                bound = 1.0 / layer.in_features**0.5
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=generator) * 2 * bound - bound)
        grid = torch.linspace(-span, span, 256, device=self.inner.weight.device)
        optimizer = torch.optim.Adam(self.parameters(), lr=0.02)
        for _ in range(steps):
            loss = (self(grid) - grid).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return float(loss.detach())


class QuantNetWeight(Quantizer):
    """Binary weights through a shared ``MetaQuantizer`` (see the module docstring). After every
    training forward, ``penalty`` holds ``mean(1 - u^2)`` (the term that pushes ``u`` to +/-1) and
    ``gap`` the discretization error ``mean|u - sgn(u)|``."""

    name = "quantnet"
    role = "weight"

    def __init__(self, meta: MetaQuantizer) -> None:
        super().__init__(0)
        self.meta = meta
        self.penalty: torch.Tensor | None = None
        self.gap: torch.Tensor | None = None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        z = self.meta(w / (w.std() + STD_EPS))
        if not self.training:
            return qf.channel_scale(w) * qf.sign(z)
        dims = tuple(range(1, w.dim()))
        alpha = w.abs().mean(dim=dims, keepdim=True)
        u = torch.tanh(self.meta.beta * z)
        self.penalty = (1 - u.pow(2)).mean()
        self.gap = (u.detach() - qf.sign(u.detach())).abs().mean()
        return alpha * u

    def options(self) -> dict[str, object]:
        return {}
