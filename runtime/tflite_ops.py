"""Read the operator list of a TFLite flatbuffer without TensorFlow (a few dozen lines of FlatBuffers).

Only what the harness needs: the operator codes (builtin code or custom name) and how often each
is used in the first subgraph. Every offset is bounds-checked, so a truncated or foreign file
raises ``BenchError`` instead of reading garbage.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from runtime.errors import BenchError

# The custom operators of Larq Compute Engine v0.16 (larq_compute_engine/tflite/kernels/lce_ops_register.h).
LCE_CUSTOM_OPS = frozenset({"LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d"})
_CUSTOM = 32  # BuiltinOperator_CUSTOM in tensorflow/lite/schema/schema.fbs
# Model table fields: 0 version, 1 operator_codes, 2 subgraphs. OperatorCode: 0 deprecated_builtin_code,
# 1 custom_code, 2 version, 3 builtin_code. SubGraph: 3 operators. Operator: 0 opcode_index.


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise BenchError(
                f"{self.source}: the TFLite flatbuffer is truncated or corrupt (offset {pos} is outside "
                f"its {len(self.data)} bytes); re-run the convert stage to rewrite it"
            )
        return struct.unpack_from(fmt, self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None when absent."""
        vtable = table - self._unpack("<i", table)
        vt_size = self._unpack("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        rel = self._unpack("<H", vtable + slot)
        return table + rel if rel else None

    def indirect(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def vector(self, pos: int) -> list[int]:
        start = self.indirect(pos)
        count = self._unpack("<I", start)
        if count > len(self.data):
            raise BenchError(f"{self.source}: the TFLite flatbuffer is corrupt (vector of {count} entries)")
        return [start + 4 + 4 * i for i in range(count)]

    def byte_vector_end(self, pos: int) -> int:
        start = self.indirect(pos)
        end = start + 4 + self._unpack("<I", start)
        if end > len(self.data):
            raise BenchError(
                f"{self.source}: the TFLite flatbuffer is truncated or corrupt (a weight buffer ends at byte {end} "
                f"of {len(self.data)}); re-run the convert stage to rewrite it"
            )
        return end

    def string(self, pos: int) -> str:
        start = self.indirect(pos)
        length = self._unpack("<I", start)
        if start + 4 + length > len(self.data):
            raise BenchError(f"{self.source}: the TFLite flatbuffer is truncated (a string runs past the end)")
        return self.data[start + 4 : start + 4 + length].decode("utf-8", "replace")

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self.field(table, index)
        return default if pos is None else self._unpack(fmt, pos)


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
    data = Path(path).read_bytes()
    check_flatbuffer(data, source)
    reader = _Reader(data, source)
    model = reader.indirect(0)
    codes_pos = reader.field(model, 1)
    names: list[str] = []
    for entry in reader.vector(codes_pos) if codes_pos is not None else []:
        table = reader.indirect(entry)
        builtin = max(reader.scalar(table, 0, "<b", 0), reader.scalar(table, 3, "<i", 0))
        custom_pos = reader.field(table, 1)
        if builtin == _CUSTOM and custom_pos is not None:
            names.append(reader.string(custom_pos))
        else:
            names.append(f"builtin:{builtin}")
    counts: Counter[str] = Counter()
    subgraphs_pos = reader.field(model, 2)
    if subgraphs_pos is None:
        raise BenchError(f"{source}: the TFLite flatbuffer has no subgraph; re-run the convert stage")
    subgraphs = reader.vector(subgraphs_pos)
    if not subgraphs:
        raise BenchError(f"{source}: the TFLite flatbuffer has no subgraph; re-run the convert stage")
    graph = reader.indirect(subgraphs[0])
    ops_pos = reader.field(graph, 3)
    for op in reader.vector(ops_pos) if ops_pos is not None else []:
        index = reader.scalar(reader.indirect(op), 0, "<I", 0)
        if index >= len(names):
            raise BenchError(f"{source}: the TFLite flatbuffer is corrupt (operator code {index} of {len(names)})")
        counts[names[index]] += 1
    buffers_pos = reader.field(model, 4)  # Model.buffers: every weight buffer must lie inside the file
    for entry in reader.vector(buffers_pos) if buffers_pos is not None else []:
        data_pos = reader.field(reader.indirect(entry), 0)
        if data_pos is not None:
            reader.byte_vector_end(data_pos)
    return counts


def custom_ops(path: str | Path) -> set[str]:
    """The custom operator names used by the model (e.g. {'LceQuantize', 'LceBconv2d'})."""
    return {name for name in operator_counts(path) if not name.startswith("builtin:")}
