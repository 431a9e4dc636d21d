"""The binarization library: sign/STEs, the quantizer registry, ``QuantConv2d`` and its deploy form,
layer eligibility and swapping, calibration, BiTAT's importance numerics, deploy specs and the
bit-aware summary (``train.quant.summary``, imported on demand)."""

from train.quant.functional import approx_sign, channel_scale, sign, ste_sign
from train.quant.layers import DeployForm, QuantConv2d
from train.quant.quantizers import Quantizer, available, from_config, get, register
from train.quant.surgery import eligible_layers, quant_layers, quantize_eligible, quantize_layers

__all__ = [
    "DeployForm",
    "QuantConv2d",
    "Quantizer",
    "approx_sign",
    "available",
    "channel_scale",
    "eligible_layers",
    "from_config",
    "get",
    "quant_layers",
    "quantize_eligible",
    "quantize_layers",
    "register",
    "sign",
    "ste_sign",
]
