"""What a quantized layer is: its weight and input-activation bit widths, declared once.

Quantizers declare the bits they produce (as larq quantizers declare ``precision``); the layer's
``Precision`` is read from them by the summary, the manifest, the converter's report and the
runtime, never re-derived from strings. Written ``float`` (32/32) or ``w<bits>a<bits>``
(``w1a1``: binary weights and activations; ``w4a8``: 4-bit weights, 8-bit activations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

FLOAT_BITS = 32
_LOW_BITS = range(1, 9)  # 1..8-bit integer grids
_NAME = re.compile(r"w(\d+)a(\d+)")


@dataclass(frozen=True, order=True)
class Precision:
    """Weight and input-activation bit widths of one layer (32 = float)."""

    weight_bits: int
    activation_bits: int

    def __post_init__(self) -> None:
        for what, bits in (("weight", self.weight_bits), ("activation", self.activation_bits)):
            if bits != FLOAT_BITS and bits not in _LOW_BITS:
                raise ValueError(f"{what} bits must be 1..8 or {FLOAT_BITS} (float), got {bits}")

    @property
    def is_float(self) -> bool:
        return self.weight_bits == FLOAT_BITS and self.activation_bits == FLOAT_BITS

    @property
    def is_binary(self) -> bool:
        """Binary weights and binary inputs: what LCE runs as ``LceBconv2d``."""
        return self.weight_bits == 1 and self.activation_bits == 1

    def weight_bytes(self, params: int) -> float:
        """Bytes ``params`` weights take at this width, packed (1-bit: 1/8 byte each)."""
        return params * self.weight_bits / 8

    def binary_ops(self, macs: int) -> int:
        """The BOPs of ``macs`` multiply-accumulates: MACs x weight bits x activation bits, float excluded."""
        return 0 if self.is_float else macs * self.weight_bits * self.activation_bits

    def __str__(self) -> str:
        return "float" if self.is_float else f"w{self.weight_bits}a{self.activation_bits}"

    @classmethod
    def parse(cls, text: str) -> Precision:
        """``'float'`` or ``'w<bits>a<bits>'`` -> ``Precision``; ``ValueError`` otherwise."""
        if text == "float":
            return FLOAT
        match = _NAME.fullmatch(text)
        if match is None:
            raise ValueError(f"precision must be 'float' or 'w<bits>a<bits>' such as 'w1a1', got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))


FLOAT = Precision(FLOAT_BITS, FLOAT_BITS)
W1A1 = Precision(1, 1)


def _coerce(value: Any) -> Any:
    return Precision.parse(value) if isinstance(value, str) else value


PrecisionField = Annotated[Precision, BeforeValidator(_coerce), PlainSerializer(str, return_type=str)]
"""A ``Precision`` in a schema: read from and written as its string form."""
