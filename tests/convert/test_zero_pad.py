"""The zero-padding edge correction, exhaustively over conv geometries (NumPy, float64; no TensorFlow).

conv(pad_0(s), W) == conv(pad_1(s), W) - C for every kernel, stride, dilation, input size and padding
(TF-SAME-shaped or not); the LCE side of it is in test_parity_matrix.py and test_bnn_styles.py.
"""

from __future__ import annotations

import itertools

import numpy as np

from convert import padding
from convert.onnx_graph import ConvGeometry
from convert.zero_pad import edge_correction


def _conv(x: np.ndarray, weight: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """A VALID NCHW conv (batch 1) as NHWC [OH, OW, O], by the definition."""
    _, h, w = x.shape
    ekh, ekw = g.effective_kernel
    oh, ow = (h - ekh) // g.strides[0] + 1, (w - ekw) // g.strides[1] + 1
    out = np.zeros((oh, ow, weight.shape[0]))
    for ky, kx in itertools.product(range(g.kernel[0]), range(g.kernel[1])):
        rows = slice(ky * g.dilations[0], ky * g.dilations[0] + (oh - 1) * g.strides[0] + 1, g.strides[0])
        cols = slice(kx * g.dilations[1], kx * g.dilations[1] + (ow - 1) * g.strides[1] + 1, g.strides[1])
        out += np.einsum("ihw,oi->hwo", x[:, rows, cols], weight[:, :, ky, kx])
    return out


def test_edge_correction_turns_one_padding_into_zero_padding_in_every_geometry():
    rng = np.random.default_rng(0)
    checked = 0
    for k, s, d, size in itertools.product((1, 2, 3, 5, 7), (1, 2, 3), (1, 2), (5, 6, 7, 8, 9)):
        if s > 1 and d > 1:
            continue
        g = ConvGeometry((k, k), (s, s), (d, d), 1)
        ek = g.effective_kernel[0]
        candidates = {padding.same_pads(size, ek, s), ((ek - 1) // 2, (ek - 1) // 2), (ek - 1, 0), (1, 2)}
        for (top, bottom), (left, right) in itertools.product(candidates, repeat=2):
            if size + top + bottom < ek or size + left + right < ek:
                continue
            pads = (*padding.canonical_pads(size, ek, s, top, bottom), *padding.canonical_pads(size, ek, s, left, right))
            signs = np.where(rng.random((3, size, size)) < 0.5, -1.0, 1.0)
            weight = rng.normal(size=(4, 3, k, k))
            zero = np.pad(signs, ((0, 0), pads[:2], pads[2:]), constant_values=0.0)
            one = np.pad(signs, ((0, 0), pads[:2], pads[2:]), constant_values=1.0)
            correction = edge_correction(weight, g, pads, (size, size)).astype(np.float64)
            np.testing.assert_allclose(_conv(one, weight, g) - correction, _conv(zero, weight, g), atol=1e-5)
            checked += 1
    assert checked > 500


def test_edge_correction_is_zero_away_from_the_borders():
    g = ConvGeometry((3, 3), (1, 1), (1, 1), 1)
    correction = edge_correction(np.ones((2, 4, 3, 3)), g, (1, 1, 1, 1), (6, 6))
    assert correction.shape == (6, 6, 2)
    assert not correction[1:-1, 1:-1].any()
    assert correction[0, 0, 0] == 4 * 5 and correction[0, 2, 0] == 4 * 3  # corner: 5 taps outside, edge: 3
