"""The operator list of a TFLite flatbuffer without TensorFlow, read with the schema-generated ``tflite``
package (FlatBuffers' Python runtime).

Only what the harness needs: the operator codes (builtin code or custom name) and how often each
is used in the first subgraph. The generated reader does not verify offsets, so vector lengths and
weight buffers are checked against the file size here, and any read the damage sends past the end
becomes one ``BenchError``: a truncated or foreign file never reaches an interpreter.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from runtime.errors import BenchError

# The custom operators of Larq Compute Engine v0.16 (larq_compute_engine/tflite/kernels/lce_ops_register.h).
LCE_CUSTOM_OPS = frozenset({"LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d"})
_CORRUPT = (struct.error, IndexError, ValueError, OverflowError, TypeError)  # what reads past the end raise


class _Corrupt(Exception):
    """Raised inside the walk; reported once, with the file name, by ``operator_counts``."""


def check_flatbuffer(data: bytes, source: str) -> None:
    """Raise ``BenchError`` unless ``data`` starts like a TFLite model (identifier ``TFL3``)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BenchError(
            f"{source}: not a TFLite flatbuffer (no 'TFL3' identifier in its first 8 bytes, {len(data)} bytes "
            "in all); re-run the convert stage or pass the right file"
        )


def operator_counts(path: str | Path) -> Counter[str]:
    """Count the operators of subgraph 0 by name: builtin codes as numbers ('builtin:3'), custom ops by name.

    Also walks every weight buffer, so a truncated file is reported here rather than by an interpreter.
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BenchError(f"{source}: cannot read the TFLite flatbuffer ({exc.strerror})") from None
    check_flatbuffer(data, source)
    try:
        return _walk(data)
    except (_Corrupt, *_CORRUPT) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchError(f"{source}: the TFLite flatbuffer is truncated or corrupt ({detail}); re-run the convert "
                         "stage to rewrite it") from None


def _count(length: int, data: bytes, what: str) -> int:
    """A vector's length, refused when its 4-byte entries could not fit in the file."""
    if length < 0 or 4 * length > len(data):
        raise _Corrupt(f"{what} claims {length} entries in a {len(data)}-byte file")
    return length


def _walk(data: bytes) -> Counter[str]:
    from tflite.BuiltinOperator import BuiltinOperator  # 190 generated modules: loaded when a model is read
    from tflite.Model import Model

    model = Model.GetRootAs(data, 0)
    names: list[str] = []
    for i in range(_count(model.OperatorCodesLength(), data, "the operator code list")):
        code = model.OperatorCodes(i)
        builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
        custom = code.CustomCode()
        if builtin == BuiltinOperator.CUSTOM and custom is not None:
            names.append(custom.decode("utf-8", "replace"))
        else:
            names.append(f"builtin:{builtin}")
    if _count(model.SubgraphsLength(), data, "the subgraph list") == 0:
        raise _Corrupt("it has no subgraph")
    graph = model.Subgraphs(0)
    counts: Counter[str] = Counter()
    for j in range(_count(graph.OperatorsLength(), data, "the operator list")):
        index = graph.Operators(j).OpcodeIndex()
        if index >= len(names):
            raise _Corrupt(f"operator code {index} of {len(names)}")
        counts[names[index]] += 1
    for b in range(_count(model.BuffersLength(), data, "the buffer list")):
        model.Buffers(b).DataAsNumpy()  # a view of the weight bytes: raises when they run past the end
    return counts


def custom_ops(path: str | Path) -> set[str]:
    """The custom operator names used by the model (e.g. {'LceQuantize', 'LceBconv2d'})."""
    return {name for name in operator_counts(path) if not name.startswith("builtin:")}
