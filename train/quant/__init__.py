"""The quantization library: sign/STEs, the quantizer registry, ``QuantConv2d`` (its eval forward is
the exported form), integer grids and their QDQ export (``grid``), UniQ's quantizer (``uniq``),
QuantNet's meta-quantizer (``quantnet``), QAF's quantized CP (``cp``), layer eligibility and swapping,
calibration, BiTAT's importance numerics, the manifest's layer specs and the bit-aware summary
(``train.quant.summary``, imported on demand)."""

from train.quant import grid, uniq  # noqa: F401 - registers their quantizers
from train.quant.functional import approx_sign, channel_scale, sign, ste_sign
from train.quant.layers import QuantConv2d
from train.quant.quantizers import Quantizer, available, check_role, from_config, get, register
from train.quant.rotation import RotatedSign
from train.quant.surgery import eligible_layers, quantize_eligible, quantize_layers

__all__ = [
    "QuantConv2d",
    "Quantizer",
    "RotatedSign",
    "approx_sign",
    "available",
    "channel_scale",
    "check_role",
    "eligible_layers",
    "from_config",
    "get",
    "quantize_eligible",
    "quantize_layers",
    "register",
    "sign",
    "ste_sign",
]
