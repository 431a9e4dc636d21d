"""Compile an LCE ``model.tflite`` into ``model.blob``: the read-only model of the C engine (runtime/native).

The blob holds every tensor (shape, type, where it lives), every op (kind, operands, parameters)
and the constants, already in the layouts the engine's kernels read, plus a static memory plan:
each run-time tensor and per-op scratch buffer has a fixed offset in ONE arena whose size is in the
header. The C side validates all of it at load (bounds, shapes, types) and never allocates.

Semantics follow LCE 0.16's kernels (``larq_compute_engine/tflite/kernels``, read, not copied):
binary convolutions accumulate xor-popcounts over +1 padding; their float/int8 output transform is
``float(clamp(2 * acc)) * m + b`` with ``m = -post_mul / scale`` and
``b = (post_bias + K * post_mul) / scale + zero_point`` computed in double (``K = kh * kw * Cin``);
same-zero padding adds ``m * (sum of the outside taps' Cin - 2 * popcount(w))`` afterwards;
bitpacked output is ``acc > threshold``.

Layout (little-endian, every field 32 bits; see runtime/native/src/blob_format.h, which mirrors
``PARAMS`` and the kind numbers below, a test keeps both in step):

    header   20 words: magic, format version, total bytes, CRC-32 of bytes [16, total), arena
             bytes, tensor count + offset, op count + offset, operand count + offset, input
             tensor, output tensor, params offset + bytes, data offset + bytes, 3 reserved
    tensors  12 words each: dtype, rank, dims[4], storage (0 arena, 1 constant), offset, bytes,
             scale, zero point, reserved
    ops      8 words each: kind, input count, output count, first operand, params offset +
             bytes, scratch offset + bytes
    operands tensor indices (each op's inputs then outputs; -1 = an absent optional input)
    params   per-op parameter structs (``PARAMS``)
    data     constants, each 16-byte aligned
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convert.errors import ConvertError
from convert.memory_plan import Buffer, plan

BLOB_FORMAT_VERSION = 2
MAGIC = 0x4C425442  # "BTBL" read as a little-endian word
HEADER_WORDS, TENSOR_WORDS, OP_WORDS = 20, 12, 8
DATA_ALIGN = 16
BCONV_TILE_PIXELS = 64
"""Output pixels per im2col tile of a binary convolution (its scratch holds one tile)."""
BCONV_CHANNEL_BLOCK = 16
"""Output channels of one weight block of a binary convolution (runtime/native/src/kernels/bgemm.h)."""

# dtype codes
F32, I32, I8 = 1, 2, 3
_DTYPES = {F32: np.float32, I32: np.int32, I8: np.int8}

KINDS: dict[str, int] = {
    "LceQuantize": 1, "LceDequantize": 2, "LceBconv2d": 3, "LceBMaxPool2d": 4,
    "CONV_2D": 10, "DEPTHWISE_CONV_2D": 11, "FULLY_CONNECTED": 12, "CONV_2D+PRELU": 13,
    "ADD": 20, "SUB": 21, "MUL": 22, "DIV": 23, "MAXIMUM": 24, "MINIMUM": 25,
    "PRELU": 30, "RELU": 31, "RELU6": 32, "RELU_N1_TO_1": 33, "LOGISTIC": 34, "HARD_SWISH": 35,
    "PAD": 40, "RESHAPE": 41, "TRANSPOSE": 42, "CONCATENATION": 43, "CONCATENATION+PRELU": 44, "CHAIN": 45,
    "MAX_POOL_2D": 50, "AVERAGE_POOL_2D": 51, "MEAN": 52, "REDUCE_MAX": 53, "SOFTMAX": 54,
    "QUANTIZE": 60, "BITAT_FUSED": 70,
}
"""Engine op kinds, named as in the flatbuffer (PADV2 compiles to PAD); "A+B" kinds and CHAIN (a run of
element-wise ops) are fused by ``_Compiler._fuse``, BITAT_FUSED (memory fusion) by convert/blob_fuse.py."""

_BCONV_PARAMS = [("channels_in", "i"), ("channels_out", "i"), ("filter_h", "i"), ("filter_w", "i"), ("stride_h", "i"),
                 ("stride_w", "i"), ("dilation_h", "i"), ("dilation_w", "i"), ("pad_top", "i"), ("pad_left", "i"),
                 ("zero_padding", "i"), ("clamp_min", "i"), ("clamp_max", "i")]

PARAMS: dict[str, list[tuple[str, str]]] = {
    "bconv": _BCONV_PARAMS,
    "pool": [("filter_h", "i"), ("filter_w", "i"), ("stride_h", "i"), ("stride_w", "i"), ("pad_top", "i"),
             ("pad_left", "i"), ("act_min", "f"), ("act_max", "f")],
    "conv": [("stride_h", "i"), ("stride_w", "i"), ("dilation_h", "i"), ("dilation_w", "i"), ("pad_top", "i"),
             ("pad_left", "i"), ("depth_multiplier", "i"), ("act_min", "f"), ("act_max", "f")],
    "activation": [("act_min", "f"), ("act_max", "f")],
    "pad": [("before0", "i"), ("before1", "i"), ("before2", "i"), ("before3", "i"), ("after0", "i"),
            ("after1", "i"), ("after2", "i"), ("after3", "i"), ("value_bits", "i")],
    "transpose": [("perm0", "i"), ("perm1", "i"), ("perm2", "i"), ("perm3", "i")],
    "concat": [("axis", "i"), ("act_min", "f"), ("act_max", "f")],
    "reduce": [("axes_mask", "i")],
    "softmax": [("beta", "f")],
    "chain": [("steps", "i")] + [(f"op{k}", "i") for k in range(8)],
    "fused": [("height", "i"), ("width", "i"), ("channels", "i"), ("producer", "i"), *_BCONV_PARAMS,  # the producer's
              ("bias_offset", "i"), ("multiplier_offset", "i"), ("tile_pixels", "i"),
              ("n_steps", "i"), *((f"step{i}", "i") for i in range(8)), ("rows_offset", "i"), ("store_y", "i"),
              ("y_channel_offset", "i"), ("y_channels", "i"), ("n_quantizers", "i"),
              *((f"q{i}_{k}", "i") for i in range(2)
                for k in ("threshold_row", "pad_top", "pad_bottom", "pad_left", "pad_right", "pad_bit")),
              ("pool", "i")],  # BITAT_FUSED: convert/blob_fuse.py
}
"""Parameter structs (all 32-bit fields, in order) shared by the kinds in ``KIND_PARAMS``."""

KIND_PARAMS: dict[str, str | None] = {
    "LceBconv2d": "bconv", "LceBMaxPool2d": "pool", "MAX_POOL_2D": "pool",
    "AVERAGE_POOL_2D": "pool", "CONV_2D": "conv", "CONV_2D+PRELU": "conv", "DEPTHWISE_CONV_2D": "conv",
    "FULLY_CONNECTED": "activation",
    "ADD": "activation", "SUB": "activation", "MUL": "activation", "DIV": "activation", "MAXIMUM": "activation",
    "MINIMUM": "activation", "RELU": "activation", "RELU6": "activation", "RELU_N1_TO_1": "activation",
    "PAD": "pad", "TRANSPOSE": "transpose", "CONCATENATION": "concat", "CONCATENATION+PRELU": "concat", "MEAN": "reduce", "REDUCE_MAX": "reduce",
    "SOFTMAX": "softmax", "CHAIN": "chain", "BITAT_FUSED": "fused",
}

_INF = float("inf")
_ACTIVATIONS = {0: (-_INF, _INF), 1: (0.0, _INF), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
_ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_TFL_TYPES = {0: F32, 2: I32, 9: I8}
_TFL_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


class BlobError(ConvertError):
    """The flatbuffer cannot be compiled into an engine blob (unreadable, or an op outside the engine's set)."""


@dataclass
class _Tensor:
    dtype: int
    dims: list[int]
    const: bytes | None = None
    scale: float = 0.0
    zero_point: int = 0
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.dims) * np.dtype(_DTYPES[self.dtype]).itemsize


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    params: dict[str, float] = field(default_factory=dict)
    scratch: int = 0
    scratch_offset: int = 0


@dataclass(frozen=True)
class BlobOp:
    """One op of a compiled blob, for reports: its engine kind and where it came from."""

    index: int
    kind: str
    source_ops: tuple[int, ...]  # the flatbuffer ops it runs (two for a fused pair)
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class CompiledBlob:
    """The blob bytes and the facts the bundle and reports record about it."""

    data: bytes
    arena_bytes: int
    format_version: int
    ops: tuple[BlobOp, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _window(size: int, kernel: int, stride: int, dilation: int, same: bool) -> tuple[int, int]:
    """TFLite's output size and leading pad for one spatial axis (``ComputePaddingHeightWidth``)."""
    effective = (kernel - 1) * dilation + 1
    out = _cdiv(size, stride) if same else (size - effective + stride) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2


def _popcount_words(words: np.ndarray) -> np.ndarray:
    """Set bits of each int32 word (any shape)."""
    as_bytes = words.astype(np.int32).view(np.uint8).reshape(*words.shape, 4)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)


class _Compiler:
    """Walks the main subgraph once, lowering each op and registering the tensors it touches."""

    def __init__(self, flatbuffer: bytes, memory_fusion: bool = False) -> None:
        from flatbuffers import flexbuffers
        from larq_compute_engine.mlir.python import tflite_schema as schema

        self.flex = flexbuffers
        self.memory_fusion = memory_fusion
        try:
            self.model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
            graph = self.model.subgraphs[0]
            self.graph = graph
            builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
            self.op_names = [c.customCode.decode() if c.customCode else
                             builtin_names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?")
                             for c in self.model.operatorCodes]
            self.tfl_ops = list(graph.operators or [])
            self.tfl_tensors = list(graph.tensors or [])
            inputs, outputs = list(graph.inputs), list(graph.outputs)
        except Exception as exc:  # the generated reader raises whatever a corrupt buffer provokes
            raise BlobError(f"not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
        if len(self.model.subgraphs) != 1:
            raise BlobError(f"the model has {len(self.model.subgraphs)} subgraphs; the engine runs exactly one")
        if len(inputs) != 1 or len(outputs) != 1:
            raise BlobError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the engine takes one of each")
        self.flatbuffer = flatbuffer
        self.tensors: list[_Tensor] = []
        self.of_tfl: dict[int, int] = {}
        self.ops: list[_Op] = []
        self.sources: list[tuple[int, ...]] = []
        self.input = self.tensor(inputs[0])
        self.output = self.tensor(outputs[0])
        if self.tensors[self.input].const is not None or self.tensors[self.output].const is not None:
            raise BlobError("the model's input or output is a constant")

    # -- tensors ---------------------------------------------------------------------------------
    def _tfl(self, index: int):
        if not 0 <= index < len(self.tfl_tensors):
            raise BlobError(f"op refers to tensor {index}, but the model has {len(self.tfl_tensors)}")
        return self.tfl_tensors[index]

    def _buffer_bytes(self, t) -> bytes | None:
        if not 0 <= t.buffer < len(self.model.buffers):
            return None
        buf = self.model.buffers[t.buffer]
        if buf.offset and buf.offset > 1:  # buffers stored after the flatbuffer (models > 2 GB)
            return self.flatbuffer[buf.offset:buf.offset + buf.size]
        return None if buf.data is None or len(buf.data) == 0 else bytes(buf.data)

    def tensor(self, index: int) -> int:
        """The blob tensor of flatbuffer tensor ``index`` (registered on first use)."""
        if index in self.of_tfl:
            return self.of_tfl[index]
        t = self._tfl(index)
        name = t.name.decode(errors="replace") if t.name else str(index)
        if t.type not in _TFL_TYPES:
            raise BlobError(f"tensor '{name}' has type {_TFL_TYPE_NAMES.get(t.type, t.type)}; the engine handles "
                            "float32, int32 (bitpacked) and int8")
        dims = [int(d) for d in (t.shape if t.shape is not None else [])]
        if len(dims) > 4 or min(dims, default=1) < 1:
            raise BlobError(f"tensor '{name}' has shape {dims}; the engine handles static shapes of rank <= 4")
        scale, zero_point = 0.0, 0
        q = t.quantization
        if t.type == 9:
            if q is None or q.scale is None or len(q.scale) != 1:
                raise BlobError(f"int8 tensor '{name}' is not per-tensor quantized; the engine handles one scale "
                                "per int8 tensor")
            scale, zero_point = float(q.scale[0]), int(q.zeroPoint[0])
        rec = _Tensor(_TFL_TYPES[t.type], dims, scale=scale, zero_point=zero_point)
        data = self._buffer_bytes(t)
        if data is not None:
            if len(data) != rec.nbytes:
                raise BlobError(f"constant tensor '{name}' holds {len(data)} bytes, its shape {dims} needs {rec.nbytes}")
            rec.const = data
        self.tensors.append(rec)
        self.of_tfl[index] = len(self.tensors) - 1
        return len(self.tensors) - 1

    def array(self, index: int, what: str) -> np.ndarray:
        """The values of constant flatbuffer tensor ``index`` (``what`` names it in errors)."""
        rec = self.tensors[self.tensor(index)]
        if rec.const is None:
            raise BlobError(f"{what} must be a constant tensor")
        return np.frombuffer(rec.const, dtype=_DTYPES[rec.dtype]).reshape(rec.dims)

    def const(self, values: np.ndarray) -> int:
        """A new constant blob tensor holding ``values`` (float32, int32 or int8)."""
        code = {np.dtype(np.float32): F32, np.dtype(np.int32): I32, np.dtype(np.int8): I8}[values.dtype]
        values = np.ascontiguousarray(values)
        self.tensors.append(_Tensor(code, list(values.shape) or [1], const=values.tobytes()))
        return len(self.tensors) - 1

    def shape(self, blob_index: int) -> list[int]:
        return self.tensors[blob_index].dims

    def dtype(self, blob_index: int) -> int:
        return self.tensors[blob_index].dtype

    # -- ops -------------------------------------------------------------------------------------
    def options(self, op) -> dict:
        if op.customOptions is not None and len(op.customOptions):
            try:
                return dict(self.flex.Loads(bytes(op.customOptions)))
            except Exception as exc:
                raise BlobError(f"unreadable custom options ({exc})") from None
        return dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}

    def compile(self) -> CompiledBlob:
        for position, op in enumerate(self.tfl_ops):
            if not 0 <= op.opcodeIndex < len(self.op_names):
                raise BlobError(f"op {position} has opcode index {op.opcodeIndex} outside the model's opcode table")
            name = self.op_names[op.opcodeIndex]
            lower = _LOWERINGS.get(name)
            if lower is None:
                supported = ", ".join(sorted(set(_LOWERINGS)))
                raise BlobError(f"op {position} ({name}) is not supported by the engine; it runs {supported}")
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
            if len(outputs) != 1:
                raise BlobError(f"op {position} ({name}) has {len(outputs)} outputs; the engine's ops have one")
            try:
                lowered = lower(self, inputs, outputs[0], self.options(op))
            except BlobError as exc:
                raise BlobError(f"op {position} ({name}): {exc}") from None
            for t in lowered.outputs:
                if self.tensors[t].const is not None:
                    raise BlobError(f"op {position} ({name}) writes into a constant tensor")
            self.ops.append(lowered)
            self.sources.append((position,))
        if self.memory_fusion:
            from convert.blob_fuse import fuse

            fuse(self)  # first: it reads the single element-wise ops that _fuse would merge into CHAINs
        self._fuse()
        self._plan_memory()
        return self._serialize()

    def _fuse(self) -> None:
        """Exact rewrites for speed, repeated until none applies (each result computes what the ops it
        replaces computed, in the same order): CONV_2D or a channel CONCATENATION followed by the PRELU
        that is its only reader take the PReLU into their output loop; a run of element-wise ops each
        read only by the next (ADD/SUB/MUL by a per-channel or same-shape operand, PRELU), possibly
        ending in LceQuantize, becomes one CHAIN op; a float PAD read only by an LceQuantize becomes
        LceQuantize then a PAD of the packed words (+1, bit 0, where the pad value is >= 0); a binary
        convolution's same-one padding becomes a PAD of its packed input."""
        while self._fuse_pair():
            pass
        ops, sources = [], []
        for op, source in zip(self.ops, self.sources, strict=True):
            rewritten = self._pad_before_bconv(op) if op.kind == "LceBconv2d" else None
            ops += rewritten or [op]
            sources += [source] * len(rewritten or [op])
        self.ops, self.sources = ops, sources

    def _fuse_pair(self) -> bool:
        """Fuse the first op whose only reader it can merge with; whether one was found."""
        readers: dict[int, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in set(op.inputs):
                readers.setdefault(t, []).append(i)
        for i, op in enumerate(self.ops):
            out = op.outputs[0]
            if out == self.output or len(readers.get(out, [])) != 1:
                continue
            j = readers[out][0]
            nxt = self.ops[j]
            if nxt.kind == "PRELU" and op.kind in ("CONV_2D", "CONCATENATION"):
                fused = self._fuse_prelu(op, nxt)
            elif op.kind == "PAD" and nxt.kind == "LceQuantize" and self.dtype(out) == F32:
                fused = self._quantize_before_pad(op, nxt)
            else:
                chain = self._as_chain(op)
                fused = None if chain is None else self._extend_chain(chain, nxt, out)
            if fused:  # placed where the reader was: every input of both is ready there
                self.ops[j:j + 1] = fused
                self.sources[j:j + 1] = [self.sources[i] + self.sources[j]] * len(fused)
                del self.ops[i], self.sources[i]
                return True
        return False

    _CHAIN_CODES = {"ADD": 1, "SUB": 2, "RSUB": 3, "MUL": 4, "PRELU": 5}

    def _chain_operand(self, t: int, running: int) -> int | None:
        """``t`` as a step operand next to the running tensor: a tensor of its shape, or one value per
        channel (a scalar constant is widened to that); None when it fits neither."""
        dims, shape = self.shape(running), self.shape(t)
        if t == running:
            return None
        if shape == dims:
            return t
        trimmed = shape[next((k for k, d in enumerate(shape) if d != 1), len(shape)):]
        if trimmed == dims[-1:]:
            return t
        if math.prod(shape) == 1 and self.tensors[t].const is not None:
            value = np.frombuffer(self.tensors[t].const, np.float32)[0]
            return self.const(np.full(dims[-1], value, np.float32))
        return None

    def _step(self, op: _Op, running: int) -> tuple[int, int] | None:
        """``op`` as a chain step on the tensor ``running`` (one of its inputs): (code, operand)."""
        if self.dtype(op.outputs[0]) != F32 or self.shape(op.outputs[0]) != self.shape(running):
            return None
        if op.kind == "PRELU":
            operand = self._chain_operand(op.inputs[1], running) if op.inputs[0] == running else None
            return None if operand is None else (self._CHAIN_CODES["PRELU"], operand)
        if op.kind not in ("ADD", "SUB", "MUL") or (op.params["act_min"], op.params["act_max"]) != (-_INF, _INF):
            return None
        first = op.inputs[0] == running
        other = op.inputs[1] if first else op.inputs[0]
        operand = self._chain_operand(other, running)
        if operand is None:
            return None
        kind = op.kind if first or op.kind != "SUB" else "RSUB"
        return self._CHAIN_CODES[kind], operand

    def _as_chain(self, op: _Op) -> tuple[int, list[tuple[int, int]]] | None:
        """``op`` as (input, steps): a CHAIN, or an element-wise op on a tensor of its output's shape."""
        if op.kind == "CHAIN" and self.dtype(op.outputs[0]) == F32:
            codes = [op.params[f"op{k}"] for k in range(op.params["steps"])]
            return op.inputs[0], list(zip(codes, op.inputs[1:], strict=True))
        for running in op.inputs[:1] if op.kind == "PRELU" else op.inputs:
            if self.tensors[running].const is None:
                step = self._step(op, running)
                if step is not None:
                    return running, [step]
        return None

    def _extend_chain(self, chain: tuple[int, list[tuple[int, int]]], nxt: _Op, running: int) -> list[_Op] | None:
        x, steps = chain
        out = nxt.outputs[0]
        if nxt.kind == "LceQuantize":
            if self.shape(running)[-1] % 32:
                return None
        else:
            step = self._step(nxt, running)
            if step is None or len(steps) == 8:
                return None
            steps = steps + [step]
        params = {"steps": len(steps), **{f"op{k}": steps[k][0] if k < len(steps) else 0 for k in range(8)}}
        return [_Op("CHAIN", [x] + [operand for _, operand in steps], [out], params)]

    def _fuse_prelu(self, op: _Op, prelu: _Op) -> list[_Op] | None:
        if prelu.inputs[0] != op.outputs[0] or (op.params["act_min"], op.params["act_max"]) != (-_INF, _INF):
            return None
        alpha, out = prelu.inputs[1], prelu.outputs[0]
        dims, slope = self.shape(out), self.shape(alpha)
        if self.tensors[alpha].const is None or math.prod(slope) != dims[-1] or slope[-1] != dims[-1]:
            return None
        if op.kind == "CONCATENATION" and op.params["axis"] != 3:
            return None
        return [_Op(op.kind + "+PRELU", op.inputs + [alpha], [out], dict(op.params))]

    def _pad_before_bconv(self, op: _Op) -> list[_Op] | None:
        """Same-one padding as an explicit PAD of the packed input (zero words are +1), so that the
        convolution itself reads only inside its input (no bounds checks in its im2col)."""
        p = op.params
        if p["zero_padding"] or (p["pad_top"] == 0 and p["pad_left"] == 0 and not self._needs_tail_padding(op)):
            return None
        x, y = op.inputs[0], op.outputs[0]
        _, h, w, words = self.shape(x)
        _, oh, ow, _ = self.shape(y)
        total_h = max((oh - 1) * p["stride_h"] + (p["filter_h"] - 1) * p["dilation_h"] + 1 - h, 0)
        total_w = max((ow - 1) * p["stride_w"] + (p["filter_w"] - 1) * p["dilation_w"] + 1 - w, 0)
        self.tensors.append(_Tensor(I32, [1, h + total_h, w + total_w, words]))
        padded = len(self.tensors) - 1
        pads = {"before0": 0, "before1": p["pad_top"], "before2": p["pad_left"], "before3": 0, "after0": 0,
                "after1": total_h - p["pad_top"], "after2": total_w - p["pad_left"], "after3": 0, "value_bits": 0}
        conv = _Op(op.kind, [padded] + op.inputs[1:], [y], {**p, "pad_top": 0, "pad_left": 0}, op.scratch)
        return [_Op("PAD", [x], [padded], pads), conv]

    def _needs_tail_padding(self, op: _Op) -> bool:
        """Whether the last output reads past the input's bottom or right edge (SAME padding after)."""
        p = op.params
        _, h, w, _ = self.shape(op.inputs[0])
        _, oh, ow, _ = self.shape(op.outputs[0])
        return ((oh - 1) * p["stride_h"] + (p["filter_h"] - 1) * p["dilation_h"] >= h or
                (ow - 1) * p["stride_w"] + (p["filter_w"] - 1) * p["dilation_w"] >= w)

    def _quantize_before_pad(self, pad: _Op, quantize: _Op) -> list[_Op] | None:
        p = pad.params
        channels = self.shape(pad.inputs[0])[-1]
        negative = np.int32(p["value_bits"]).view(np.float32) < 0
        if p["before3"] or p["after3"] or (negative and channels % 32):
            return None
        x, packed_out = pad.inputs[0], quantize.outputs[0]
        self.tensors.append(_Tensor(I32, self.shape(x)[:-1] + [_cdiv(channels, 32)]))
        packed = len(self.tensors) - 1
        return [_Op("LceQuantize", [x], [packed]),
                _Op("PAD", [packed], [packed_out], {**p, "value_bits": -1 if negative else 0})]

    def _plan_memory(self) -> None:
        first: dict[int, int] = {self.input: 0}
        last: dict[int, int] = {self.output: len(self.ops)}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t >= 0 and self.tensors[t].const is None:
                    if t not in first:
                        raise BlobError(f"op {self.sources[i][0]} ({op.kind}) reads a tensor that no op writes")
                    last[t] = max(last.get(t, i), i)
            for t in op.outputs:
                first.setdefault(t, i)
                last[t] = max(last.get(t, i), i)
        if not self.ops or self.output not in first:
            raise BlobError("no op writes the model's output")
        buffers = [Buffer(t, self.tensors[t].nbytes, first[t], last[t]) for t in first]
        buffers += [Buffer(-1 - i, op.scratch, i, i) for i, op in enumerate(self.ops) if op.scratch]
        offsets, self.arena_bytes = plan(buffers)
        for key, offset in offsets.items():
            if key >= 0:
                self.tensors[key].offset = offset
            else:
                self.ops[-1 - key].scratch_offset = offset

    def _serialize(self) -> CompiledBlob:
        data = bytearray()
        placed: dict[bytes, int] = {}
        for t in self.tensors:
            if t.const is not None:
                if t.const not in placed:
                    data += b"\0" * (-len(data) % DATA_ALIGN)
                    placed[t.const] = len(data)
                    data += t.const
                t.offset = placed[t.const]
        data += b"\0" * (-len(data) % DATA_ALIGN)
        params = bytearray()
        param_spans = []
        for op in self.ops:
            layout = KIND_PARAMS.get(op.kind)
            fields = PARAMS[layout] if layout else []
            missing = {f for f, _ in fields} ^ set(op.params)
            assert not missing, (op.kind, missing)  # noqa: S101 - a lowering bug, not a user error
            packed = b"".join(struct.pack("<" + kind, op.params[f]) for f, kind in fields)
            param_spans.append((len(params), len(packed)))
            params += packed
        operands = [t for op in self.ops for t in op.inputs + op.outputs]
        tensors_offset = HEADER_WORDS * 4
        ops_offset = tensors_offset + TENSOR_WORDS * 4 * len(self.tensors)
        operands_offset = ops_offset + OP_WORDS * 4 * len(self.ops)
        params_offset = operands_offset + 4 * len(operands)
        data_offset = params_offset + len(params)
        data_offset += -data_offset % DATA_ALIGN
        total = data_offset + len(data)
        body = bytearray()
        for t in self.tensors:
            dims = t.dims + [1] * (4 - len(t.dims))
            body += struct.pack("<2I4i3Ifi", t.dtype, len(t.dims), *dims, 0 if t.const is None else 1, t.offset,
                                t.nbytes, t.scale, t.zero_point) + b"\0" * 4
        first = 0
        for op, (p_off, p_len) in zip(self.ops, param_spans, strict=True):
            body += struct.pack("<8I", KINDS[op.kind], len(op.inputs), len(op.outputs), first, p_off, p_len,
                                op.scratch_offset, op.scratch)
            first += len(op.inputs) + len(op.outputs)
        body += struct.pack(f"<{len(operands)}i", *operands)
        body += params
        body += b"\0" * (data_offset - HEADER_WORDS * 4 - len(body))
        body += data
        header_tail = struct.pack("<16I", self.arena_bytes, len(self.tensors), tensors_offset, len(self.ops),
                                  ops_offset, len(operands), operands_offset, self.input, self.output, params_offset,
                                  len(params), data_offset, len(data), 0, 0, 0)
        crc = zlib.crc32(header_tail + body)
        blob = struct.pack("<4I", MAGIC, BLOB_FORMAT_VERSION, total, crc) + header_tail + body
        assert len(blob) == total  # noqa: S101
        ops = tuple(BlobOp(i, op.kind, src, tuple(self.tensors[op.outputs[0]].dims))
                    for i, (op, src) in enumerate(zip(self.ops, self.sources, strict=True)))
        return CompiledBlob(bytes(blob), self.arena_bytes, BLOB_FORMAT_VERSION, ops,
                            tuple(self.tensors[self.input].dims), tuple(self.tensors[self.output].dims))


# -- lowerings: (compiler, flatbuffer inputs, flatbuffer output, options) -> _Op ---------------------

Lowering = Callable[[_Compiler, list[int], int, dict], _Op]


def _need(inputs: list[int], count: int, optional: int = 0) -> None:
    if not count <= len(inputs) <= count + optional:
        raise BlobError(f"expected {count} inputs, got {len(inputs)}")
    if any(i < 0 for i in inputs[:count]):
        raise BlobError("a required input is missing")


def _expect_type(c: _Compiler, t: int, dtypes: tuple[int, ...], what: str) -> None:
    if c.dtype(t) not in dtypes:
        names = {F32: "float32", I32: "int32", I8: "int8"}
        raise BlobError(f"{what} is {names[c.dtype(t)]}; expected {' or '.join(names[d] for d in dtypes)}")


def _activation(code: int) -> dict[str, float]:
    if code not in _ACTIVATIONS:
        raise BlobError(f"fused activation {_ACT_NAMES.get(code, code)} is not supported")
    lo, hi = _ACTIVATIONS[code]
    return {"act_min": lo, "act_max": hi}


def _check_output(c: _Compiler, out: int, dims: list[int]) -> None:
    if c.shape(out) != dims:
        raise BlobError(f"the output has shape {c.shape(out)}, but the op computes {dims}")


def _to4(axis: int, rank: int) -> int:
    """A (possibly negative) axis of a rank-``rank`` tensor, as an index into its 4-D right-aligned form."""
    if not -rank <= axis < rank:
        raise BlobError(f"axis {axis} is out of range for rank {rank}")
    return (axis % rank) + 4 - rank


def _quantize(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (F32, I8), "the input")
    _expect_type(c, y, (I32,), "the output")
    dims = c.shape(x)
    _check_output(c, y, dims[:-1] + [_cdiv(dims[-1], 32)])
    return _Op("LceQuantize", [x], [y])


def _dequantize(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (I32,), "the input")
    _expect_type(c, y, (F32,), "the output")
    dims = c.shape(y)
    if c.shape(x) != dims[:-1] + [_cdiv(dims[-1], 32)]:
        raise BlobError(f"the packed input {c.shape(x)} does not match the output {dims}")
    return _Op("LceDequantize", [x], [y])


def _pad4(values: np.ndarray) -> np.ndarray:
    """Per-channel values zero-padded to a multiple of 4 channels (the kernels read whole vectors)."""
    return np.concatenate([values, np.zeros(-len(values) % 4, values.dtype)])


def _channel_blocked(rows: np.ndarray) -> np.ndarray:
    """Binary weights [Cout, D] (LCE's bitpacked OHWI rows) in the kernels' layout: output channels in
    blocks of ``BCONV_CHANNEL_BLOCK`` and then of 4 (zero channels pad the last), each block [D][width]:
    word d of the block's channels side by side (runtime/native/src/kernels/bgemm.h)."""
    cout, depth = rows.shape
    padded = np.zeros((_cdiv(cout, 4) * 4, depth), np.int32)
    padded[:cout] = rows
    wide = len(padded) // BCONV_CHANNEL_BLOCK * BCONV_CHANNEL_BLOCK
    blocks = [padded[:wide].reshape(-1, BCONV_CHANNEL_BLOCK, depth), padded[wide:].reshape(-1, 4, depth)]
    return np.concatenate([b.transpose(0, 2, 1).reshape(-1) for b in blocks])


def _bconv(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs[:2], 2)
    inputs = inputs + [-1] * (5 - len(inputs))
    for key in ("channels_in", "stride_height", "stride_width", "dilation_height_factor", "dilation_width_factor",
                "padding", "pad_values", "fused_activation_function"):
        if key not in opts:
            raise BlobError(f"the custom options lack '{key}'")
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (I32,), "the input")
    _expect_type(c, y, (F32, I8, I32), "the output")
    cin = int(opts["channels_in"])
    words = _cdiv(cin, 32)
    if len(c.shape(x)) != 4 or c.shape(x)[0] != 1 or c.shape(x)[3] != words:
        raise BlobError(f"the packed input {c.shape(x)} does not hold {cin} channels as [1, H, W, {words}]")
    weights = c.array(inputs[1], "the filter").astype(np.int32)
    if weights.ndim != 4:
        raise BlobError(f"the filter has shape {list(weights.shape)}; expected [O, H, W, I/32]")
    _, h, w, _ = c.shape(x)
    cout, kh, kw, fw = weights.shape
    if fw != words:
        raise BlobError(f"grouped binary convolution (filter depth {fw} words for {cin} input channels) is not "
                        "supported; our converter never emits it")
    sh, sw = int(opts["stride_height"]), int(opts["stride_width"])
    dh, dw = int(opts["dilation_height_factor"]), int(opts["dilation_width_factor"])
    if min(sh, sw, dh, dw, kh, kw, cin) < 1:
        raise BlobError("strides, dilations, the filter size and channels_in must be positive")
    same = int(opts["padding"]) == 0
    pad_value = int(opts["pad_values"])
    if pad_value not in (0, 1):
        raise BlobError(f"pad_values is {pad_value}; LCE defines 0 and 1")
    oh, pad_top = _window(h, kh, sh, dh, same)
    ow, pad_left = _window(w, kw, sw, dw, same)
    out_type = c.dtype(y)
    _check_output(c, y, [1, oh, ow, _cdiv(cout, 32) if out_type == I32 else cout])
    depth = kh * kw * words
    operands = [x, c.const(_channel_blocked(weights.reshape(cout, depth))), -1, -1, -1, -1]
    # input, weights, multiplier, bias, thresholds, correction; per-channel values padded to 4 channels
    zero_padding = same and pad_value == 0
    act = int(opts["fused_activation_function"])
    k = kh * kw * cin
    clamp_min, clamp_max = 0, 2 * k
    if out_type == I32:
        if inputs[4] < 0:
            raise BlobError("bitpacked output needs the thresholds input")
        if zero_padding:
            raise BlobError("same-zero padding with bitpacked output is not defined by LCE")
        thresholds = c.array(inputs[4], "the thresholds").astype(np.int32).reshape(-1)
        if thresholds.shape != (cout,):
            raise BlobError(f"the thresholds hold {thresholds.size} values for {cout} output channels")
        operands[4] = c.const(_pad4(thresholds))
    else:
        if inputs[2] < 0 or inputs[3] < 0:
            raise BlobError("float and int8 output need the post-activation multiplier and bias")
        post_mul = c.array(inputs[2], "post_activation_multiplier").astype(np.float64).reshape(-1)
        post_bias = c.array(inputs[3], "post_activation_bias").astype(np.float64).reshape(-1)
        if post_mul.shape != (cout,) or post_bias.shape != (cout,):
            raise BlobError(f"the post-activation multiplier/bias do not hold {cout} values")
        scale, zp = (1.0, 0.0) if out_type == F32 else (float(c.tensors[y].scale), float(c.tensors[y].zero_point))
        multiplier = (-post_mul / scale).astype(np.float32)
        bias = ((post_bias + k * post_mul) / scale + zp).astype(np.float32)
        if act not in (0, 1, 2, 3):
            raise BlobError(f"fused activation {_ACT_NAMES.get(act, act)} is not supported")
        int_min, int_max = {0: (-2**31, 2**31 - 1), 1: (0, 2**31 - 1), 2: (-1, 1), 3: (0, 6)}[act]
        int_min, int_max = max(int_min, -k), min(int_max, k)
        clamp_min, clamp_max = k - int_max, k - int_min
        operands[2:4] = [c.const(_pad4(multiplier)), c.const(_pad4(bias))]
        if zero_padding:
            if out_type != F32 or act != 0:
                raise BlobError("same-zero padding needs float output without a fused activation (as in LCE)")
            taps = weights.reshape(cout, kh * kw, words)
            correction = cin - 2 * _popcount_words(taps).sum(axis=-1)  # [Cout, taps]: the tap's sum at +1 input
            operands[5] = c.const(np.ascontiguousarray(correction.T).astype(np.int32))  # [taps][Cout]
    tile = min(BCONV_TILE_PIXELS, _cdiv(oh * ow, 4) * 4)
    params = {"channels_in": cin, "channels_out": cout, "filter_h": kh, "filter_w": kw, "stride_h": sh, "stride_w": sw, "dilation_h": dh, "dilation_w": dw,
              "pad_top": pad_top, "pad_left": pad_left, "zero_padding": int(zero_padding),
              "clamp_min": clamp_min, "clamp_max": clamp_max}
    accumulators = 0 if out_type == F32 else _cdiv(cout, 4) * 4  # float output is written by the kernel itself
    return _Op("LceBconv2d", operands, [y], params, scratch=4 * tile * (depth + accumulators))


def _pool(kind: str, dtypes: tuple[int, ...]) -> Lowering:
    def lower(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
        _need(inputs, 1)
        x, y = c.tensor(inputs[0]), c.tensor(out)
        _expect_type(c, x, dtypes, "the input")
        _expect_type(c, y, (c.dtype(x),), "the output")
        if len(c.shape(x)) != 4 or c.shape(x)[0] != 1:
            raise BlobError(f"the input has shape {c.shape(x)}; expected [1, H, W, C]")
        custom = kind == "LceBMaxPool2d"
        fh, fw = (int(opts["filter_height"]), int(opts["filter_width"])) if custom else \
            (int(opts["filterHeight"]), int(opts["filterWidth"]))
        sh, sw = (int(opts["stride_height"]), int(opts["stride_width"])) if custom else \
            (int(opts["strideH"]), int(opts["strideW"]))
        if min(fh, fw, sh, sw) < 1:
            raise BlobError("the filter size and strides must be positive")
        same = int(opts["padding"]) == 0
        _, h, w, ch = c.shape(x)
        oh, pad_top = _window(h, fh, sh, 1, same)
        ow, pad_left = _window(w, fw, sw, 1, same)
        _check_output(c, y, [1, oh, ow, ch])
        act = _activation(0 if custom else int(opts.get("fusedActivationFunction", 0)))
        return _Op(kind, [x], [y], {"filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw,
                                    "pad_top": pad_top, "pad_left": pad_left, **act})
    return lower


def _conv(depthwise: bool) -> Lowering:
    def lower(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
        _need(inputs, 2, optional=1)
        x, y = c.tensor(inputs[0]), c.tensor(out)
        for t, what in ((x, "the input"), (y, "the output")):
            _expect_type(c, t, (F32,), what)
        if len(c.shape(x)) != 4 or c.shape(x)[0] != 1:
            raise BlobError(f"the input has shape {c.shape(x)}; expected [1, H, W, C]")
        weights = c.array(inputs[1], "the filter").astype(np.float32)
        _, h, w, cin = c.shape(x)
        if weights.ndim != 4:
            raise BlobError(f"the filter has shape {list(weights.shape)}")
        if depthwise:
            _, kh, kw, cout = weights.shape
            mult = int(opts.get("depthMultiplier", 1)) or 1
            if cout != cin * mult:
                raise BlobError(f"the filter has {cout} channels for {cin} inputs times multiplier {mult}")
            packed = weights.reshape(kh, kw, cout)
        else:
            cout, kh, kw, fin = weights.shape
            if fin != cin:
                raise BlobError(f"grouped convolution (filter depth {fin}, input channels {cin}) is not supported")
            mult = 1
            packed = weights.transpose(1, 2, 3, 0)  # OHWI -> HWIO: output channels innermost
        sh, sw = int(opts["strideH"]), int(opts["strideW"])
        dh, dw = int(opts.get("dilationHFactor", 1)), int(opts.get("dilationWFactor", 1))
        if min(sh, sw, dh, dw) < 1:
            raise BlobError("strides and dilations must be positive")
        same = int(opts["padding"]) == 0
        oh, pad_top = _window(h, kh, sh, dh, same)
        ow, pad_left = _window(w, kw, sw, dw, same)
        _check_output(c, y, [1, oh, ow, cout])
        bias = (c.array(inputs[2], "the bias").astype(np.float32).reshape(-1) if len(inputs) > 2 and inputs[2] >= 0
                else np.zeros(cout, np.float32))
        if bias.shape != (cout,):
            raise BlobError(f"the bias holds {bias.size} values for {cout} output channels")
        params = {"stride_h": sh, "stride_w": sw, "dilation_h": dh, "dilation_w": dw, "pad_top": pad_top,
                  "pad_left": pad_left, "depth_multiplier": mult,
                  **_activation(int(opts.get("fusedActivationFunction", 0)))}
        return _Op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, c.const(np.ascontiguousarray(packed)),
                                                                     c.const(bias)], [y], params)
    return lower


def _fully_connected(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 2, optional=1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    for t, what in ((x, "the input"), (y, "the output")):
        _expect_type(c, t, (F32,), what)
    if int(opts.get("weightsFormat", 0)) != 0:
        raise BlobError("shuffled weights are not supported")
    weights = c.array(inputs[1], "the weights").astype(np.float32)
    if weights.ndim != 2:
        raise BlobError(f"the weights have shape {list(weights.shape)}; expected [O, I]")
    units, depth = weights.shape
    size = math.prod(c.shape(x))
    if size % depth:
        raise BlobError(f"the input has {size} values, not a multiple of the weights' depth {depth}")
    if math.prod(c.shape(y)) != size // depth * units:
        raise BlobError(f"the output {c.shape(y)} does not hold {size // depth} x {units} values")
    bias = (c.array(inputs[2], "the bias").astype(np.float32).reshape(-1) if len(inputs) > 2 and inputs[2] >= 0
            else np.zeros(units, np.float32))
    if bias.shape != (units,):
        raise BlobError(f"the bias holds {bias.size} values for {units} units")
    return _Op("FULLY_CONNECTED", [x, c.const(np.ascontiguousarray(weights)), c.const(bias)], [y],
               _activation(int(opts.get("fusedActivationFunction", 0))))


def _broadcast_dims(a: list[int], b: list[int]) -> list[int]:
    rank = max(len(a), len(b))
    a4, b4 = [1] * (rank - len(a)) + a, [1] * (rank - len(b)) + b
    if any(p != q and 1 not in (p, q) for p, q in zip(a4, b4, strict=True)):
        raise BlobError(f"shapes {a} and {b} do not broadcast")
    return [max(p, q) for p, q in zip(a4, b4, strict=True)]


def _binary(kind: str) -> Lowering:
    def lower(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
        _need(inputs, 2)
        a, b, y = c.tensor(inputs[0]), c.tensor(inputs[1]), c.tensor(out)
        for t, what in ((a, "the first input"), (b, "the second input"), (y, "the output")):
            _expect_type(c, t, (F32,), what)
        dims = _broadcast_dims(c.shape(a), c.shape(b))
        if math.prod(dims) != math.prod(c.shape(y)):
            raise BlobError(f"the output {c.shape(y)} does not match the broadcast shape {dims}")
        if kind == "PRELU":
            return _Op(kind, [a, b], [y])
        return _Op(kind, [a, b], [y], _activation(int(opts.get("fusedActivationFunction", 0))))
    return lower


def _unary(kind: str, act: int | None = None) -> Lowering:
    def lower(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
        _need(inputs, 1)
        x, y = c.tensor(inputs[0]), c.tensor(out)
        for t, what in ((x, "the input"), (y, "the output")):
            _expect_type(c, t, (F32,), what)
        if math.prod(c.shape(x)) != math.prod(c.shape(y)):
            raise BlobError(f"the output {c.shape(y)} does not match the input {c.shape(x)}")
        return _Op(kind, [x], [y], _activation(act) if act is not None else {})
    return lower


def _pad(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 2, optional=1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (F32, I32), "the input")
    _expect_type(c, y, (c.dtype(x),), "the output")
    dims = c.shape(x)
    pads = c.array(inputs[1], "the paddings").astype(np.int64)
    if pads.shape != (len(dims), 2) or pads.min() < 0:
        raise BlobError(f"the paddings {pads.tolist()} are not [rank, 2] non-negative values")
    value = np.zeros(1, _DTYPES[c.dtype(x)])
    if len(inputs) > 2 and inputs[2] >= 0:
        value = c.array(inputs[2], "the pad value").reshape(-1)
        if value.size != 1 or value.dtype != _DTYPES[c.dtype(x)]:
            raise BlobError("the pad value must be one value of the input's type")
    _check_output(c, y, [d + int(p.sum()) for d, p in zip(dims, pads, strict=True)])
    lead = 4 - len(dims)
    before = [0] * lead + [int(p[0]) for p in pads]
    after = [0] * lead + [int(p[1]) for p in pads]
    bits = int(value.view(np.int32)[0])
    return _Op("PAD", [x], [y], {**{f"before{i}": before[i] for i in range(4)},
                                **{f"after{i}": after[i] for i in range(4)}, "value_bits": bits})


def _reshape(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 1, optional=1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, y, (c.dtype(x),), "the output")
    if math.prod(c.shape(x)) != math.prod(c.shape(y)):
        raise BlobError(f"cannot reshape {c.shape(x)} into {c.shape(y)}")
    return _Op("RESHAPE", [x], [y])


def _transpose(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 2)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (F32, I32), "the input")
    _expect_type(c, y, (c.dtype(x),), "the output")
    dims = c.shape(x)
    perm = [int(p) for p in c.array(inputs[1], "the permutation").reshape(-1)]
    if sorted(perm) != list(range(len(dims))):
        raise BlobError(f"{perm} is not a permutation of {len(dims)} axes")
    _check_output(c, y, [dims[p] for p in perm])
    lead = 4 - len(dims)
    full = list(range(lead)) + [p + lead for p in perm]
    return _Op("TRANSPOSE", [x], [y], {f"perm{i}": full[i] for i in range(4)})


def _concat(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    if not inputs or any(i < 0 for i in inputs):
        raise BlobError("concatenation needs at least one input")
    xs, y = [c.tensor(i) for i in inputs], c.tensor(out)
    _expect_type(c, xs[0], (F32, I32), "the first input")
    for t in xs[1:] + [y]:
        _expect_type(c, t, (c.dtype(xs[0]),), "every input and the output")
    rank = len(c.shape(xs[0]))
    axis = int(opts.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise BlobError(f"axis {opts.get('axis')} is out of range for rank {rank}")
    dims = list(c.shape(xs[0]))
    for t in xs[1:]:
        d = c.shape(t)
        if len(d) != rank or any(p != q for i, (p, q) in enumerate(zip(d, dims, strict=True)) if i != axis):
            raise BlobError(f"input shapes {[c.shape(t) for t in xs]} differ outside axis {axis}")
        dims[axis] += d[axis]
    _check_output(c, y, dims)
    act = _activation(int(opts.get("fusedActivationFunction", 0)))
    if c.dtype(xs[0]) != F32 and act["act_min"] != -_INF:
        raise BlobError("a fused activation needs float32 inputs")
    return _Op("CONCATENATION", xs, [y], {"axis": _to4(axis, rank), **act})


def _reduce(kind: str) -> Lowering:
    def lower(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
        _need(inputs, 2)
        x, y = c.tensor(inputs[0]), c.tensor(out)
        for t, what in ((x, "the input"), (y, "the output")):
            _expect_type(c, t, (F32,), what)
        dims = c.shape(x)
        axes = {_to4(int(a), len(dims)) for a in c.array(inputs[1], "the axes").reshape(-1)}
        kept = [d for i, d in enumerate([1] * (4 - len(dims)) + dims) if i not in axes]
        if math.prod(kept) != math.prod(c.shape(y)):
            raise BlobError(f"the output {c.shape(y)} does not match reducing {dims} over axes {sorted(axes)}")
        return _Op(kind, [x], [y], {"axes_mask": sum(1 << a for a in axes)})
    return lower


def _softmax(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    for t, what in ((x, "the input"), (y, "the output")):
        _expect_type(c, t, (F32,), what)
    if c.shape(x) != c.shape(y):
        raise BlobError(f"the output {c.shape(y)} does not match the input {c.shape(x)}")
    return _Op("SOFTMAX", [x], [y], {"beta": float(opts.get("beta", 1.0))})


def _quantize_int8(c: _Compiler, inputs: list[int], out: int, opts: dict) -> _Op:
    _need(inputs, 1)
    x, y = c.tensor(inputs[0]), c.tensor(out)
    _expect_type(c, x, (F32,), "the input")
    _expect_type(c, y, (I8,), "the output (float32 -> int8 only)")
    if c.shape(x) != c.shape(y):
        raise BlobError(f"the output {c.shape(y)} does not match the input {c.shape(x)}")
    return _Op("QUANTIZE", [x], [y])


_LOWERINGS: dict[str, Lowering] = {
    "LceQuantize": _quantize, "LceDequantize": _dequantize, "LceBconv2d": _bconv,
    "LceBMaxPool2d": _pool("LceBMaxPool2d", (I32,)),
    "CONV_2D": _conv(False), "DEPTHWISE_CONV_2D": _conv(True), "FULLY_CONNECTED": _fully_connected,
    **{k: _binary(k) for k in ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "PRELU")},
    "RELU": _unary("RELU", 1), "RELU6": _unary("RELU6", 3), "RELU_N1_TO_1": _unary("RELU_N1_TO_1", 2),
    "LOGISTIC": _unary("LOGISTIC"), "HARD_SWISH": _unary("HARD_SWISH"),
    "PAD": _pad, "PADV2": _pad, "RESHAPE": _reshape, "TRANSPOSE": _transpose, "CONCATENATION": _concat,
    "MAX_POOL_2D": _pool("MAX_POOL_2D", (F32,)), "AVERAGE_POOL_2D": _pool("AVERAGE_POOL_2D", (F32,)),
    "MEAN": _reduce("MEAN"), "REDUCE_MAX": _reduce("REDUCE_MAX"), "SOFTMAX": _softmax,
    "QUANTIZE": _quantize_int8,
}
assert set(_LOWERINGS) - {"PADV2"} == {k for k in KINDS if "+" not in k and k not in ("CHAIN", "BITAT_FUSED")}  # noqa: S101


def compile_blob(flatbuffer: bytes, *, memory_fusion: bool = False) -> CompiledBlob:
    """Compile an LCE/TFLite flatbuffer into the engine's blob; ``BlobError`` names the first problem.

    ``memory_fusion`` (for microcontrollers) fuses layer groups pixel by pixel (convert/blob_fuse.py): a much
    smaller arena, but about 2.4x the instructions of the speed-planned blob on a Cortex-A72."""
    try:
        return _Compiler(bytes(flatbuffer), memory_fusion).compile()
    except BlobError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, struct.error) as exc:
        # a damaged flatbuffer that still parses: fields of the wrong size or kind
        raise BlobError(f"the flatbuffer is inconsistent ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
