"""QAF's numerics (Cherniuk et al., arXiv:2308.04595; METHODS.md §4): CP decomposition of a conv
weight with every factor on a b-bit grid, found by ALS with ADMM updates, and the factorised conv.

A conv weight ``W`` (``C_out x C_in x k_h x k_w``) is the 3-way tensor ``X`` (``I = C_out``,
``J = C_in``, ``K = k_h k_w``, row-major); ``X ~ [[A, B, C]]``, ``X_ijk = sum_r A_ir B_jr C_kr``.
Per mode (``A`` shown; ``B``, ``C`` alike), with the Gram matrix ``G = (B^T B) * (C^T C)``, the MTTKRP
``F = X_(1) (C kr B)``, ``rho = tr(G) / R``, a warm-started dual ``U`` and the projection ``Pi`` onto
the grid:

    H~ = (G + rho I)^-1 (F + rho (H + U))^T,   H = Pi(H~^T - U),   U = U + H - H~^T

until ``|H - H~^T|^2 / |H|^2`` and ``|H - H_prev|^2 / |U|^2`` are below ``eps`` (or ``inner``
iterations). ``Pi(V) = s clip(round(V / s), -2^(b-1), 2^(b-1) - 1)``, ``s = 2t / (2^b - 1)`` with the
clipping threshold ``t`` chosen among 200 values in ``[0.2, 1.2] max|V|`` by mean squared error; one
scale per factor, re-estimated at every projection. Outer (ALS) iterations stop when the relative
error of the projected factors changes by less than ``tol`` or has risen by more than ``1e-3``
over 5 iterations. All of this follows the official code (``KamikaziZen/admm-quantization``,
``source/admm.py``, ``source/quantization.py``, ``scripts/factorize.py``). Ours: the start is plain
CP-ALS from a seeded random point (the code's best start adds Error-Preserving Correction); at
8 bits codes are symmetric in [-127, 127] with ``s = t / 127`` (int8 weights are symmetric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from train.quant.grid import WEIGHT_CODE_MAX, FixedGridWeight, GridConv2d

SEARCH_POINTS = 200
SEARCH_SPAN = (0.2, 1.2)


@dataclass
class GridTensor:
    """``scale * codes``: integer-valued ``codes`` (float dtype) and one positive ``scale``."""

    codes: torch.Tensor
    scale: float

    @property
    def value(self) -> torch.Tensor:
        return self.codes * self.scale


def code_range(bits: int) -> tuple[int, int]:
    """The codes of a b-bit factor: ``[-2^(b-1), 2^(b-1) - 1]``, at 8 bits ``[-127, 127]``."""
    return (-WEIGHT_CODE_MAX, WEIGHT_CODE_MAX) if bits == 8 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _step(threshold: torch.Tensor, bits: int) -> torch.Tensor:
    return threshold / WEIGHT_CODE_MAX if bits == 8 else 2 * threshold / (2**bits - 1)


def grid_squared_errors(v: torch.Tensor, steps: torch.Tensor, bits: int) -> torch.Tensor:
    """``sum (v - s clip(round(v / s)))^2`` for each step ``s``, from the sorted values' prefix sums: each
    code ``c`` takes the values in ``[(c - 1/2) s, (c + 1/2) s)`` (the end codes everything beyond), so a
    candidate costs one search per code instead of a pass over ``v``. Float64."""
    low, high = code_range(bits)
    values = v.detach().reshape(-1).double().sort().values
    zero = values.new_zeros(1)
    prefix1, square_sum = torch.cat([zero, values.cumsum(0)]), values.pow(2).sum()
    codes = torch.arange(low, high + 1, dtype=torch.float64, device=v.device)
    cuts = torch.searchsorted(values, (codes[:-1] + 0.5) * steps[:, None])  # first index of each upper bin
    bounds = torch.cat([cuts.new_zeros(len(steps), 1), cuts, cuts.new_full((len(steps), 1), values.numel())], dim=1)
    sums, counts = prefix1[bounds].diff(dim=1), bounds.diff(dim=1).double()
    levels = codes * steps[:, None]
    return square_sum - 2 * (levels * sums).sum(dim=1) + (levels.pow(2) * counts).sum(dim=1)


def project(v: torch.Tensor, bits: int) -> GridTensor:
    """``Pi(v)``: the b-bit grid point of ``v`` whose clipping threshold minimises the mean squared error."""
    low, high = code_range(bits)
    top = v.abs().max()
    if top == 0:
        return GridTensor(torch.zeros_like(v), 1.0)
    thresholds = torch.linspace(SEARCH_SPAN[0], SEARCH_SPAN[1], SEARCH_POINTS, dtype=torch.float64,
                                device=v.device) * float(top)
    steps = _step(thresholds, bits)
    step = float(steps[grid_squared_errors(v, steps, bits).argmin()])
    return GridTensor((v / step).round().clamp(low, high), step)


def cp_rank(out_channels: int, in_channels: int, kernel_elements: int, ratio: float) -> int:
    """``R = floor(C_out C_in K / ((C_out + C_in + K) rho))`` (at least 1): the rank that divides the
    parameter count by ``rho``."""
    return max(1, math.floor(out_channels * in_channels * kernel_elements
                             / ((out_channels + in_channels + kernel_elements) * ratio)))


def reconstruct(factors: list[torch.Tensor]) -> torch.Tensor:
    """``[[A, B, C]]``."""
    return torch.einsum("ir,jr,kr->ijk", *factors)


def relative_error(x: torch.Tensor, factors: list[torch.Tensor]) -> float:
    """``|X - [[A, B, C]]| / |X|``."""
    return float((x - reconstruct(factors)).norm() / x.norm())


_MTTKRP = ("ijk,kr,jr->ir", "ijk,kr,ir->jr", "ijk,jr,ir->kr")


def _normal_equations(x: torch.Tensor, factors: list[torch.Tensor], mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, F)`` of one mode: the Gram matrix of the other factors and the MTTKRP."""
    others = [f for i, f in enumerate(factors) if i != mode]
    gram = (others[0].T @ others[0]) * (others[1].T @ others[1])
    return gram, torch.einsum(_MTTKRP[mode], x, others[1], others[0])


def cp_als(x: torch.Tensor, rank: int, iterations: int, seed: int = 0) -> list[torch.Tensor]:
    """Unconstrained CP by alternating least squares from a seeded random start (balanced norms)."""
    generator = torch.Generator().manual_seed(seed)
    factors = [torch.randn(size, rank, generator=generator, dtype=x.dtype).to(x.device) for size in x.shape]
    eye = torch.eye(rank, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        for mode in range(3):
            gram, mttkrp = _normal_equations(x, factors, mode)
            ridge = 1e-9 * gram.diagonal().mean().clamp_min(1e-30)
            factors[mode] = torch.linalg.solve(gram + ridge * eye, mttkrp.T).T
        norms = [f.norm(dim=0).clamp_min(1e-30) for f in factors]
        common = (norms[0] * norms[1] * norms[2]) ** (1 / 3)
        factors = [f / n * common for f, n in zip(factors, norms, strict=True)]
    return factors


def _admm_mode(h: torch.Tensor, dual: torch.Tensor, gram: torch.Tensor, mttkrp: torch.Tensor, bits: int,
               inner: int, eps: float) -> tuple[GridTensor, torch.Tensor]:
    rank = gram.shape[0]
    rho = gram.trace() / rank
    chol = torch.linalg.cholesky(gram + rho * torch.eye(rank, dtype=gram.dtype, device=gram.device))
    grid = GridTensor(h, 1.0)
    for _ in range(inner):
        h_tilde = torch.cholesky_solve((mttkrp + rho * (h + dual)).T, chol).T
        previous = h
        grid = project(h_tilde - dual, bits)
        h = grid.value
        dual = dual + h - h_tilde
        primal = (h - h_tilde).pow(2).sum() / h.pow(2).sum().clamp_min(1e-30)
        change = (h - previous).pow(2).sum() / dual.pow(2).sum().clamp_min(1e-30)
        if primal < eps and change < eps:
            break
    return grid, dual


@dataclass
class QuantizedCP:
    """ADMM's result: the factors ``A`` (``C_out x R``), ``B`` (``C_in x R``), ``C`` (``K x R``) on their
    grids, and the relative reconstruction error of the grid factors after each outer iteration
    (``errors[0]``: the unconstrained CP-ALS start projected onto the grid)."""

    factors: list[GridTensor]
    errors: list[float]


def admm_cp(x: torch.Tensor, rank: int, bits: int, *, outer: int = 100, inner: int = 1000, init_iterations: int = 50,
            seed: int = 0, eps: float = 1e-8, tol: float = 1e-5) -> QuantizedCP:
    """Quantized CP of the 3-way tensor ``x`` by ALS with ADMM updates (module docstring); float64 inside."""
    x64 = x.detach().double()
    start = cp_als(x64, rank, init_iterations, seed)
    grids = [project(f, bits) for f in start]
    errors = [relative_error(x64, [g.value for g in grids])]
    factors = [f.clone() for f in start]
    duals = [torch.zeros_like(f) for f in factors]
    for _ in range(outer):
        for mode in range(3):
            gram, mttkrp = _normal_equations(x64, factors, mode)
            grids[mode], duals[mode] = _admm_mode(factors[mode], duals[mode], gram, mttkrp, bits, inner, eps)
            factors[mode] = grids[mode].value
        errors.append(relative_error(x64, factors))
        if abs(errors[-2] - errors[-1]) < tol or (len(errors) > 5 and errors[-1] - errors[-5] > 1e-3):
            break
    out = [GridTensor(g.codes.to(x.dtype), g.scale) for g in grids]
    return QuantizedCP(out, errors)


class CPConv2d(nn.Module):
    """A ``k x k`` conv ``C_in -> C_out`` as ``1x1 C_in -> R`` (``B^T``) -> depthwise ``k x k`` over ``R``
    channels with the original stride, padding and dilation (``C``) -> ``1x1 R -> C_out`` (``A``, and
    the original bias). Each factor conv is a ``GridConv2d`` whose ``FixedGridWeight`` holds the
    factor's b-bit grid (its step is set by ``set_factors``)."""

    def __init__(self, conv: nn.Conv2d, rank: int, bits: int) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"CPConv2d factorises a conv with groups=1, got groups={conv.groups}")
        options = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        self.rank, self.bits = rank, bits
        self.pw_in = GridConv2d(conv.in_channels, rank, 1, bias=False, weight_quantizer=FixedGridWeight(bits),
                                **options)
        self.dw = GridConv2d(rank, rank, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                             dilation=conv.dilation, groups=rank, bias=False, weight_quantizer=FixedGridWeight(bits),
                             **options)
        self.pw_out = GridConv2d(rank, conv.out_channels, 1, bias=conv.bias is not None,
                                 weight_quantizer=FixedGridWeight(bits), **options)
        for layer in self.factor_convs:
            layer.weight_quantizer.to(conv.weight.device)
            layer.set_quantized(weight=True)

    @property
    def factor_convs(self) -> tuple[GridConv2d, GridConv2d, GridConv2d]:
        return self.pw_in, self.dw, self.pw_out

    @torch.no_grad()
    def set_factors(self, factors: list[GridTensor], bias: torch.Tensor | None = None) -> None:
        """Load ``A, B, C`` (and the original bias) into the three convs."""
        a, b, c = factors
        kh, kw = self.dw.kernel_size
        weights = (b.value.T[:, :, None, None], c.value.T.reshape(self.rank, 1, kh, kw), a.value[:, :, None, None])
        for layer, grid, weight in zip(self.factor_convs, (b, c, a), weights, strict=True):
            layer.weight.copy_(weight)
            layer.weight_quantizer.scale.fill_(grid.scale)
        if bias is not None:
            self.pw_out.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_out(self.dw(self.pw_in(x)))
