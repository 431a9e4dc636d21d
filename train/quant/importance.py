"""BiTAT's numerics (METHODS.md §1.3): input correlation, orthonormal eigenbasis and importance,
the importance-weighted binarization regulariser (R9) and the importance-aware sign choice (R9b).

A conv weight is read as ``W`` of shape ``(O, D)``, ``D = C_in * kh * kw`` (``weight.flatten(1)``),
and an input patch ``x`` of length ``D`` in the same order (``F.unfold``). Then
``E||(W - What) x||^2 = tr(dW C dW^T)`` with ``C = E[x x^T] = U diag(lambda) U^T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train.quant import functional as qf
from train.quant.layers import QuantConv2d


def binary_patches(
    layer: QuantConv2d, x: torch.Tensor, max_patches: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The im2col patches ``(P, D)`` of the layer's binarized, one-padded input
    (``QuantConv2d.binarized_input``); at most ``max_patches`` of them, drawn uniformly without replacement."""
    xb = layer.binarized_input(x)
    cols = F.unfold(xb, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (N, D, L)
    patches = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if patches.shape[0] > max_patches:
        index = torch.randperm(patches.shape[0], generator=generator, device="cpu")[:max_patches]
        patches = patches[index.to(patches.device)]
    return patches


class CorrelationMeter:
    """Running mean of ``x x^T`` over all patches seen (accumulated in float64)."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.count = 0

    def update(self, patches: torch.Tensor) -> None:
        outer = (patches.T @ patches).double()
        self.sum = outer if self.sum is None else self.sum + outer
        self.count += patches.shape[0]

    def mean(self) -> torch.Tensor:
        if self.sum is None or self.count == 0:
            raise ValueError("no patches were observed; the calibration batches never reached this layer")
        return self.sum / self.count


def eigen_importance(
    corr: torch.Tensor, eps: float = 1e-4, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh(C + eps I)``: the orthonormal basis ``U`` (columns) and importance ``lambda >= 0``
    (normalised to mean 1 unless ``normalize`` is False), both float32."""
    c = corr.double()
    c = 0.5 * (c + c.T) + eps * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    lam, u = torch.linalg.eigh(c)
    lam = lam.clamp_min(0.0)
    if normalize:
        lam = lam / lam.mean().clamp_min(torch.finfo(lam.dtype).tiny)
    return u.float(), lam.float()


def binarization_error(weight: torch.Tensor) -> torch.Tensor:
    """``W - alpha sign(W)`` as ``(O, D)``, ``alpha = mean|w_o|`` detached (gradient flows through ``W``)."""
    w = weight.flatten(1)
    return w - qf.channel_scale(w) * qf.sign(w.detach())


def regularizer(
    weight: torch.Tensor,
    basis: torch.Tensor | None,
    importance: torch.Tensor | None,
    row_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """R9: ``sum_o gamma_o (w_o - alpha_o b_o) U diag(lambda) U^T (w_o - alpha_o b_o)^T / (O D)``.

    ``basis``/``importance`` None is the identity metric (plain ``||W - alpha B||^2 / (O D)``);
    ``row_weight`` (R6's ``gamma_o``) None weights every output channel 1.
    """
    err = binarization_error(weight)
    if basis is not None:
        err = err @ basis
    sq = err.square()
    if importance is not None:
        sq = sq * importance
    per_row = sq.sum(dim=1)
    if row_weight is not None:
        per_row = per_row * row_weight
    return per_row.sum() / err.numel()


@torch.no_grad()
def choose_signs(weight: torch.Tensor, corr: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """R9b: signs ``B`` (same shape as ``weight``) that approximately minimise
    ``(w_o - alpha_o b_o) C (w_o - alpha_o b_o)^T`` per output channel, by sequential rounding with
    error feedback through ``C^-1`` (GPTQ/OBQ style); ``alpha_o = mean|w_o|``."""
    w = weight.flatten(1).double().clone()
    alpha = w.abs().mean(dim=1)
    h = corr.double().to(w.device)
    h = h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    upper = torch.linalg.cholesky(hinv, upper=True)
    signs = torch.empty_like(w)
    for j in range(w.shape[1]):
        signs[:, j] = qf.sign(w[:, j])
        err = (w[:, j] - alpha * signs[:, j]) / upper[j, j]
        w[:, j + 1 :] -= err[:, None] * upper[j, j + 1 :][None, :]
    return signs.view_as(weight).to(weight.dtype)
