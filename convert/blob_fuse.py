"""Fuse chains of per-channel float ops, and the binarizers and pools that consume them, into one op.

Runs on the blob compiler's lowered ops (convert/blob.py), before the memory plan. A fused op
(engine kind ``BITAT_FUSED``, runtime/native/src/ops_fused.c) computes, in one pass over the
pixels and with no intermediate tensor:

    producer   a float tensor x [1, H, W, C], a float CONV_2D on a few input channels (a stem), or
               an LceBconv2d with float output (both computed tile by tile, never stored whole)
    chain      up to MAX_STEPS steps, each x + c, x - c, x * c, PRELU(x, c) with a per-channel
               constant c, or x + r with a tensor r of the same shape (a residual)
    outputs    y (the chain's result, when another op reads it; written over x or the residual when
               it dies here, or into its channels of a CONCATENATION, which then disappears),
               up to two bitpacked LceQuantize outputs of y - t (an absorbed SUB t) with an
               absorbed spatial PAD, and the 2 x 2, stride-2 AVERAGE_POOL_2D of y

Every float operation happens in the original order with the original operands, so the fused op
computes exactly what the unfused ops compute. In ReActNet-style graphs this removes the
full-resolution float tensors between the stem convolution, RPReLU, the binarizers' threshold and
pad, and the downsampling shortcut: the largest tensors of the model on a microcontroller.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from convert.blob import F32, I32, PARAMS, _Compiler, _Op

MAX_STEPS = 8
MAX_QUANTIZERS = 2
MAX_CONV_INPUT_CHANNELS = 8
"""A CONV_2D is fused as a producer only when it reads this few channels (a stem on raw pixels)."""
MIN_TILE_PIXELS = 16
"""The smallest tile a fused binary convolution is given to lower the arena's peak (smaller tiles repeat
per-tile work such as packing weights for the kernel)."""

STEP_ADD, STEP_SUB, STEP_MUL, STEP_PRELU, STEP_RESIDUAL = 1, 2, 3, 4, 5
PRODUCER_TENSOR, PRODUCER_CONV, PRODUCER_BCONV = 0, 1, 2
FUSED_KIND = "BITAT_FUSED"
"""Its parameters are PARAMS["fused"] in convert/blob.py. A step is ``kind | row << 4``: ``row`` indexes
the per-channel constant rows, which follow the producer's constants (conv filter and bias, or binary conv
multiplier and bias) in the op's one float constant tensor, starting at float ``rows_offset``."""


@dataclass
class _Quantizer:
    threshold: np.ndarray | None  # per channel, or None (no absorbed SUB)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    pad_bit: int = 0
    output: int = -1
    absorbed: list[int] = field(default_factory=list)


@dataclass
class _Group:
    x: int  # the producer's input tensor: the chain's input, the conv's image or the binary conv's bits
    producer: int  # PRODUCER_*
    producer_op: int | None  # index of the absorbed CONV_2D or LceBconv2d
    steps: list[tuple[int, np.ndarray | int]] = field(default_factory=list)  # (kind, constant row or residual tensor)
    ops: list[int] = field(default_factory=list)  # absorbed chain ops, in order
    value: int = -1  # the chain's output tensor
    quantizers: list[_Quantizer] = field(default_factory=list)
    pool: int | None = None  # absorbed AVERAGE_POOL_2D
    store_y: bool = False


class _Graph:
    """Consumers of every tensor, and shape and constant helpers, over the compiler's state."""

    def __init__(self, c: _Compiler) -> None:
        self.c = c
        self.consumers: dict[int, list[int]] = {}
        for i, op in enumerate(c.ops):
            for t in op.inputs:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(i)

    def dims(self, t: int) -> list[int]:
        return self.c.tensors[t].dims

    def is_const(self, t: int) -> bool:
        return self.c.tensors[t].const is not None

    def only_consumer(self, t: int) -> int | None:
        users = self.consumers.get(t, [])
        return users[0] if len(users) == 1 and t != self.c.output else None

    def channel_vector(self, t: int, channels: int) -> np.ndarray | None:
        """A float constant broadcast along the channel axis, as ``channels`` values."""
        rec = self.c.tensors[t]
        if rec.const is None or rec.dtype != F32:
            return None
        values = np.frombuffer(rec.const, dtype=np.float32)
        if values.size == 1:
            return np.full(channels, values[0], np.float32)
        if values.size == channels and rec.dims[-1] == channels:
            return values.copy()
        return None

    def feature_map(self, t: int) -> bool:
        rec = self.c.tensors[t]
        return rec.dtype == F32 and rec.const is None and len(rec.dims) == 4 and rec.dims[0] == 1


def _no_activation(op: _Op) -> bool:
    return op.params.get("act_min", -math.inf) == -math.inf and op.params.get("act_max", math.inf) == math.inf


def _step(g: _Graph, op: _Op, value: int) -> tuple[int, np.ndarray | int] | None:
    """``op`` as a chain step applied to ``value``, or None."""
    if op.kind not in ("ADD", "SUB", "MUL", "PRELU") or len(op.inputs) != 2 or value not in op.inputs:
        return None
    if op.kind != "PRELU" and not _no_activation(op):
        return None
    dims = g.dims(value)
    other = op.inputs[1] if op.inputs[0] == value else op.inputs[0]
    if g.dims(op.outputs[0]) != dims or other == value:
        return None
    vector = g.channel_vector(other, dims[-1])
    if vector is not None:
        if op.kind == "SUB" and op.inputs[0] != value:
            return None  # c - x: not a step
        if op.kind == "PRELU" and op.inputs[0] != value:
            return None
        kind = {"ADD": STEP_ADD, "SUB": STEP_SUB, "MUL": STEP_MUL, "PRELU": STEP_PRELU}[op.kind]
        return kind, vector
    if op.kind == "ADD" and g.feature_map(other) and g.dims(other) == dims:
        return STEP_RESIDUAL, other
    return None


def _quantizer(g: _Graph, first: int, value: int) -> _Quantizer | None:
    """The pattern [SUB t] -> [PAD] -> LceQuantize starting at op ``first`` (which reads ``value``)."""
    c, channels = g.c, g.dims(value)[-1]
    q = _Quantizer(threshold=None)
    op_index, current = first, value
    op = c.ops[op_index]
    if op.kind == "SUB" and op.inputs[0] == current and _no_activation(op):
        threshold = g.channel_vector(op.inputs[1], channels)
        nxt = g.only_consumer(op.outputs[0])
        if threshold is None or nxt is None:
            return None
        q.threshold, q.absorbed = threshold, [op_index]
        op_index, current = nxt, op.outputs[0]
        op = c.ops[op_index]
    if op.kind == "PAD" and op.inputs[0] == current:
        p = op.params
        if p["before0"] or p["after0"] or p["before3"] or p["after3"]:
            return None
        value_bits = struct.pack("<i", int(p["value_bits"]))
        pad_value = struct.unpack("<f", value_bits)[0]
        nxt = g.only_consumer(op.outputs[0])
        if nxt is None:
            return None
        q.pads = (int(p["before1"]), int(p["after1"]), int(p["before2"]), int(p["after2"]))
        q.pad_bit = int(pad_value < 0.0)
        q.absorbed.append(op_index)
        op_index, current = nxt, op.outputs[0]
        op = c.ops[op_index]
    if op.kind != "LceQuantize" or op.inputs[0] != current or c.tensors[op.outputs[0]].dtype != I32:
        return None
    q.absorbed.append(op_index)
    q.output = op.outputs[0]
    return q


def _pool(g: _Graph, op_index: int, value: int) -> bool:
    op, dims = g.c.ops[op_index], g.dims(value)
    p = op.params
    return (op.kind == "AVERAGE_POOL_2D" and op.inputs[0] == value and p["filter_h"] == p["filter_w"] == 2
            and p["stride_h"] == p["stride_w"] == 2 and p["pad_top"] == p["pad_left"] == 0 and _no_activation(op)
            and dims[1] % 2 == 0 and dims[2] % 2 == 0)


def _producer(g: _Graph, op: _Op) -> int:
    """PRODUCER_CONV or PRODUCER_BCONV when ``op`` can be absorbed as the producer, else PRODUCER_TENSOR."""
    y = op.outputs[0]
    if g.only_consumer(y) is None or not g.feature_map(y):
        return PRODUCER_TENSOR
    if (op.kind == "CONV_2D" and _no_activation(op) and len(op.inputs) == 3 and g.feature_map(op.inputs[0])
            and g.dims(op.inputs[0])[-1] <= MAX_CONV_INPUT_CHANNELS):
        return PRODUCER_CONV
    if op.kind == "LceBconv2d" and all(t < 0 for t in op.inputs[4:]) and not op.params["zero_padding"]:
        return PRODUCER_BCONV  # float output (bits, weights, multiplier, bias; no thresholds), +1 padding
    return PRODUCER_TENSOR


def _grow(g: _Graph, start: int) -> _Group | None:
    """The largest group whose first op is ``start``; None when fusing would gain nothing."""
    c = g.c
    op = c.ops[start]
    producer = _producer(g, op) if op.outputs else PRODUCER_TENSOR
    if producer != PRODUCER_TENSOR:
        group = _Group(x=op.inputs[0], producer=producer, producer_op=start, value=op.outputs[0])
    else:
        if not op.inputs or not g.feature_map(op.inputs[0]):
            return None
        x = op.inputs[0] if op.kind != "ADD" or g.feature_map(op.inputs[0]) else op.inputs[1]
        if _step(g, op, x) is None:
            return None
        group = _Group(x=x, producer=PRODUCER_TENSOR, producer_op=None, value=x)
    index = start if group.producer_op is None else g.only_consumer(group.value)
    while index is not None and len(group.steps) < MAX_STEPS:
        step = _step(g, c.ops[index], group.value)
        if step is None:
            break
        group.steps.append(step)
        group.ops.append(index)
        group.value = c.ops[index].outputs[0]
        index = g.only_consumer(group.value)
    for user in g.consumers.get(group.value, []):
        q = _quantizer(g, user, group.value) if len(group.quantizers) < MAX_QUANTIZERS else None
        if q is not None:
            group.quantizers.append(q)
        elif group.pool is None and _pool(g, user, group.value):
            group.pool = user
        else:
            group.store_y = True
    if group.value == c.output:
        group.store_y = True
    absorbed = len(group.ops) + (group.producer_op is not None) + len(group.quantizers) + (group.pool is not None)
    return group if absorbed >= 2 and group.value != group.x else None


class _Fuser:
    def __init__(self, c: _Compiler) -> None:
        self.c = c
        self.g = _Graph(c)
        self.replaced: dict[int, _Op] = {}  # position of a chain's last op -> its fused op
        self.removed: set[int] = set()
        self.position: dict[int, int] = {}  # absorbed op -> where its fused op runs
        self.rename: dict[int, int] = {}

    def run(self) -> None:
        for i in range(len(self.c.ops)):
            if i in self.removed:
                continue
            group = _grow(self.g, i)
            if group is None or self.removed & set(self._members(group)):
                continue
            self._emit(group)
        ops, sources = [], []
        for i, op in enumerate(self.c.ops):
            if i in self.removed and i not in self.replaced:
                continue
            op = self.replaced.get(i, op)
            op.inputs = [self._resolve(t) for t in op.inputs]
            op.outputs = [self._resolve(t) for t in op.outputs]
            ops.append(op)
            sources.append(self.c.sources[i])
        self.c.ops, self.c.sources = ops, sources
        _write_into_concatenations(self.c)
        _compact(self.c)
        _fit_tiles(self.c)

    def _resolve(self, t: int) -> int:
        """The tensor that holds ``t`` after in-place renaming (renames chain)."""
        while t in self.rename:
            t = self.rename[t]
        return t

    @staticmethod
    def _members(group: _Group) -> list[int]:
        members = list(group.ops) + ([group.producer_op] if group.producer_op is not None else [])
        for q in group.quantizers:
            members += q.absorbed
        return members + ([group.pool] if group.pool is not None else [])

    def _emit(self, group: _Group) -> None:
        c, g = self.c, self.g
        dims = g.dims(group.value)
        channels = dims[-1]
        floats: list[np.ndarray] = []
        params: dict[str, float] = {k: 0 for k, _ in PARAMS["fused"]}
        params.update(height=dims[1], width=dims[2], channels=channels)
        inputs = [group.x]
        producer_scratch = 0
        params["producer"] = group.producer
        if group.producer_op is not None:
            op = c.ops[group.producer_op]
            p = op.params
            params.update(stride_h=p["stride_h"], stride_w=p["stride_w"], dilation_h=p["dilation_h"],
                          dilation_w=p["dilation_w"], pad_top=p["pad_top"], pad_left=p["pad_left"])
            if group.producer == PRODUCER_CONV:
                filt = np.frombuffer(c.tensors[op.inputs[1]].const, dtype=np.float32)
                kh, kw, cin, _ = c.tensors[op.inputs[1]].dims
                params.update(filter_h=kh, filter_w=kw, channels_in=cin, bias_offset=filt.size)
                floats += [filt, np.frombuffer(c.tensors[op.inputs[2]].const, dtype=np.float32)]
            else:  # the binary conv's weights stay a tensor of their own; its multiplier and bias join the constants
                mult = np.frombuffer(c.tensors[op.inputs[2]].const, dtype=np.float32)
                params.update(filter_h=p["filter_h"], filter_w=p["filter_w"], channels_in=p["channels_in"],
                              channels_out=channels, clamp_min=p["clamp_min"], clamp_max=p["clamp_max"],
                              multiplier_offset=0, bias_offset=mult.size)  # both padded to 4 channels
                floats += [mult, np.frombuffer(c.tensors[op.inputs[3]].const, dtype=np.float32)]
                depth = p["filter_h"] * p["filter_w"] * -(-p["channels_in"] // 32)
                params["tile_pixels"] = tile = op.scratch // (4 * depth)  # float output: im2col rows only
                params["_tile_bytes"] = 4 * (depth + channels)  # per tile pixel (for _fit_tiles)
                producer_scratch = op.scratch + 4 * tile * channels  # its tile buffers, then the tile's output
        params["rows_offset"] = sum(a.size for a in floats)
        rows: list[np.ndarray] = []
        residual = None
        for i, (kind, operand) in enumerate(group.steps):
            row = 0
            if kind == STEP_RESIDUAL:
                if residual not in (None, operand):
                    return  # one residual tensor per fused op
                residual = operand
            else:
                row = len(rows)
                rows.append(np.asarray(operand, np.float32))
            params[f"step{i}"] = kind | row << 4
        params["n_steps"] = len(group.steps)
        outputs: list[int] = []
        in_place = False
        members = self._members(group)
        position = max(group.ops) if group.ops else group.producer_op
        assert position is not None  # noqa: S101
        if group.store_y:
            y = group.value
            host = group.x if group.producer == PRODUCER_TENSOR else residual
            # y may overwrite host when every other reader of host has run before this fused op
            others = [u for u in g.consumers.get(host, []) if u not in members] if host is not None else []
            in_place = (host is not None and host != c.input and y != c.output and g.dims(host) == g.dims(y)
                        and all(u < min(members) and self.position.get(u, u) < position for u in others))
            outputs.append(host if in_place else y)
            if in_place:
                self.rename[y] = host
        params["store_y"] = int(group.store_y)
        for i, q in enumerate(group.quantizers):
            params[f"q{i}_threshold_row"] = -1 if q.threshold is None else len(rows)
            if q.threshold is not None:
                rows.append(q.threshold)
            top, bottom, left, right = q.pads
            params.update({f"q{i}_pad_top": top, f"q{i}_pad_bottom": bottom, f"q{i}_pad_left": left,
                           f"q{i}_pad_right": right, f"q{i}_pad_bit": q.pad_bit})
            outputs.append(q.output)
        params["n_quantizers"] = len(group.quantizers)
        if group.pool is not None:
            params["pool"] = 1
            outputs.append(c.ops[group.pool].outputs[0])
        consts = np.concatenate([*(a.ravel() for a in floats), *(r.ravel() for r in rows)] or
                                [np.zeros(1, np.float32)]).astype(np.float32)
        inputs.append(c.const(consts))
        if group.producer == PRODUCER_BCONV:
            inputs.append(c.ops[group.producer_op].inputs[1])
        if residual is not None:
            inputs.append(residual)
        pooled_row = dims[2] // 2 * channels if group.pool is not None else 0
        scratch = producer_scratch + 4 * (channels + pooled_row)
        fused = _Op(FUSED_KIND, inputs, outputs, params, scratch=scratch)
        self.removed.update(members)
        self.position.update((m, position) for m in members)
        self.replaced[position] = fused


def _write_into_concatenations(c: _Compiler) -> None:
    """Let fused ops write their y straight into their channels of a channel CONCATENATION, and drop it."""
    writers = {op.outputs[0]: i for i, op in enumerate(c.ops) if op.kind == FUSED_KIND and op.params["store_y"]}

    def read_after(t: int, i: int) -> list[int]:
        return [j for j, op in enumerate(c.ops) if j > i and t in op.inputs]

    dropped = set()
    for k, op in enumerate(c.ops):
        dims = c.tensors[op.outputs[0]].dims
        if (op.kind != "CONCATENATION" or op.params["axis"] != 3 or len(dims) != 4 or op.params["act_min"] != -math.inf
                or op.params["act_max"] != math.inf or len(set(op.inputs)) != len(op.inputs)
                or any(t not in writers or writers[t] > k or read_after(t, writers[t]) != [k] or t == c.output
                       for t in op.inputs)):
            continue
        offset = 0
        for t in op.inputs:
            fused = c.ops[writers[t]]
            fused.params.update(y_channel_offset=offset, y_channels=dims[3])
            fused.outputs[0] = op.outputs[0]
            offset += c.tensors[t].dims[-1]
        dropped.add(k)
    c.ops = [op for k, op in enumerate(c.ops) if k not in dropped]
    c.sources = [s for k, s in enumerate(c.sources) if k not in dropped]


def _fit_tiles(c: _Compiler) -> None:
    """Shrink fused binary convolutions' tiles (never below MIN_TILE_PIXELS) where their scratch would raise the
    arena's peak: the peak becomes the least any op needs, and ops below it keep their larger, faster tiles."""
    first, last = {c.input: 0}, {c.output: len(c.ops)}
    for i, op in enumerate(c.ops):
        for t in op.inputs:
            if t >= 0 and c.tensors[t].const is None:
                last[t] = max(last.get(t, i), i)
        for t in op.outputs:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
    live = [sum(c.tensors[t].nbytes for t in first if first[t] <= i <= last[t]) for i in range(len(c.ops))]

    def scratch(op: _Op, tile: int) -> int:
        per_pixel = op.params["_tile_bytes"]
        return op.scratch - per_pixel * op.params["tile_pixels"] + per_pixel * tile

    tiled = [i for i, op in enumerate(c.ops) if op.kind == FUSED_KIND and op.params["producer"] == PRODUCER_BCONV]
    floor = max([live[i] + (scratch(c.ops[i], min(MIN_TILE_PIXELS, c.ops[i].params["tile_pixels"])) if i in tiled
                            else c.ops[i].scratch) for i in range(len(c.ops))], default=0)
    for i in tiled:
        op = c.ops[i]
        tile = op.params["tile_pixels"]
        while tile > MIN_TILE_PIXELS and live[i] + scratch(op, tile) > floor:
            tile -= 4
        op.scratch, op.params["tile_pixels"] = scratch(op, tile), tile
    for i in tiled:
        del c.ops[i].params["_tile_bytes"]


def _compact(c: _Compiler) -> None:
    """Drop the tensors no op reads or writes any more (the absorbed ops' intermediates and constants)."""
    used = {c.input, c.output}
    for op in c.ops:
        used.update(t for t in (*op.inputs, *op.outputs) if t >= 0)
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    c.tensors = [c.tensors[i] for i in order]
    for op in c.ops:
        op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [remap[t] for t in op.outputs]
    c.input, c.output = remap[c.input], remap[c.output]
    c.of_tfl = {k: remap[v] for k, v in c.of_tfl.items() if v in remap}


def fuse(c: _Compiler) -> None:
    """Replace fusible op groups of ``c.ops`` by BITAT_FUSED ops (see the module docstring)."""
    _Fuser(c).run()
