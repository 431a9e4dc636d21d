"""Zero padding on a binary convolution, kept binary and exact.

A binary conv reads +/-1 only; a zero in the padding is a third value. Padding with +1 instead adds,
at every output position, the weights of the taps that fall into the padding:

    conv(pad_0(s), W)[y, x, o] = conv(pad_1(s), W)[y, x, o] - C[y, x, o],
    C[y, x, o] = sum over the taps (ky, kx) of window (y, x) inside the padding of sum_i W[o, i, ky, kx],

a constant per output position and channel, zero away from the borders. So the conv is lowered as an
``LceBconv2d`` on the +1-padded input (``ConvPlan.zero_correction``) followed by the constant ``-C``.
The +1 padding goes where ``plan_conv`` puts any +1 padding that is not TF-SAME-shaped: before the
binarizer, so LCE's padding-fusion miscompile (``convert/padding.py``) is never reached.
"""

from __future__ import annotations

import numpy as np

from convert.onnx_graph import ConvGeometry
from convert.padding import output_size


def edge_correction(weight: np.ndarray, geometry: ConvGeometry, pads: tuple[int, int, int, int],
                    size: tuple[int, int]) -> np.ndarray:
    """``C`` above as an NHWC-broadcastable ``[OH, OW, O]`` float32 array for an OIHW ``weight`` over an
    input of spatial ``size`` padded by ``pads`` (top, bottom, left, right)."""
    (h, w), (top, bottom, left, right) = size, pads
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel, geometry.strides, geometry.dilations
    ekh, ekw = geometry.effective_kernel
    oh, ow = output_size(h, ekh, sh, top, bottom), output_size(w, ekw, sw, left, right)
    in_padding = np.ones((h + top + bottom, w + left + right))
    in_padding[top:top + h, left:left + w] = 0.0
    tap_sums = weight.astype(np.float64).sum(axis=1)  # (O, kh, kw): every input channel reads +1 there
    correction = np.zeros((oh, ow, weight.shape[0]))
    for ky in range(kh):
        for kx in range(kw):
            rows = slice(ky * dh, ky * dh + (oh - 1) * sh + 1, sh)
            cols = slice(kx * dw, kx * dw + (ow - 1) * sw + 1, sw)
            correction += in_padding[rows, cols, None] * tap_sums[None, None, :, ky, kx]
    return correction.astype(np.float32)
