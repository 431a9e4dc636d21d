"""Padding arithmetic for convolutions and pools, per spatial dimension.

LCE fuses an explicit pad into a following (binary or float) conv as TF "SAME" padding when its
check ``IsSamePadding1D`` holds: output == ceil(input / stride), before == total // 2 and
after == (total + 1) // 2. It never checks that ``total`` is the SAME total for the kernel, so a
symmetric pad that is *larger* than SAME needs is fused anyway and the conv then pads differently
(found by the parity matrix: binary one-padding, stride 2, even input, k = 3/5/7; see
``convert/SUPPORTED_OPS.md``). ``canonical_pads`` drops trailing padding the conv never reads;
after that, LCE's check passes only for true SAME padding, so every fusion it makes is exact.
"""

from __future__ import annotations


def effective_kernel(kernel: int, dilation: int) -> int:
    return (kernel - 1) * dilation + 1


def output_size(size: int, kernel: int, stride: int, before: int, after: int) -> int:
    """Output length of a VALID window op over ``size`` padded by ``before``/``after`` (kernel already dilated)."""
    return (size + before + after - kernel) // stride + 1


def canonical_pads(size: int, kernel: int, stride: int, before: int, after: int) -> tuple[int, int]:
    """The same pads with trailing padding the windows never read removed (kernel already dilated)."""
    out = output_size(size, kernel, stride, before, after)
    needed_after = (out - 1) * stride + kernel - size - before
    return before, max(0, min(after, needed_after))


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one dimension (kernel already dilated)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def is_same(size: int, kernel: int, stride: int, before: int, after: int) -> bool:
    """Whether explicit (before, after) padding computes exactly what TF SAME padding computes."""
    b, a = canonical_pads(size, kernel, stride, before, after)
    out = output_size(size, kernel, stride, before, after)
    return out == -(-size // stride) and (b, a) == same_pads(size, kernel, stride)
