"""Find the binarizers of a loaded graph: the tensors a binary convolution may read.

Forms (each becomes Larq's ``SteSign``, which LCE turns into ``LceQuantize``; LCE maps 0 to +1):

- ``Where(GreaterOrEqual(x, 0), 1, -1)``: our exporter's form, and QONNX ``BipolarQuant`` after
  ``convert.qonnx``; +1 at 0, so exact.
- ``Sign(Sign(x) + c)``, 0 < c < 1: Larq's form; +1 at 0, exact.
- plain ``Sign(x)`` (``torch.sign``, what public BNN code writes): torch gives 0 at ``x == 0``, LCE +1.
  It is a binarizer only for convolutions (read directly or through a ``Pad``); a ``Sign`` also read
  by other ops is copied for the convolutions and stays a float ``Sign`` (exact) for the rest. Its binarized tensors are listed in
  ``Graph.plain_signs`` so the pipeline can count the exactly-0 inputs on real data (``convert.sign_zero``).
- any of these times a scalar constant ``c`` read by a ``Conv`` (``alpha * torch.sign(x)``, a
  ``BipolarQuant`` scale): ``c`` is folded into the conv's weight, and a ``Pad`` in between gets its
  value divided by ``c`` (zero padding stays zero).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

if TYPE_CHECKING:
    from convert.onnx_graph import Graph

WHERE_FORM = "Where(GreaterOrEqual(x, 0), 1, -1)"
SIGN_SIGN_FORM = "Sign(Sign(x) + c), 0 < c < 1"
PLAIN_SIGN = "plain Sign (sign(0) = +1 in LCE, 0 in torch)"


def const_scalar(graph: Graph, tensor: str) -> float | None:
    """The single value of a constant whose entries are all equal, else None."""
    value = graph.consts.get(tensor)
    if value is None or value.size == 0:
        return None
    flat = np.asarray(value, dtype=np.float64).ravel()
    return float(flat[0]) if np.all(flat == flat[0]) else None


def _where_form(graph: Graph, node: onnx.NodeProto) -> tuple[str, list[str]] | None:
    """(source, absorbed helper nodes) when ``node`` is ``Where(x >= 0, 1, -1)``."""
    if node.op_type != "Where" or len(node.input) != 3:
        return None
    cond = graph.producer(node.input[0])
    if (cond is not None and cond.op_type == "GreaterOrEqual"
            and const_scalar(graph, node.input[1]) == 1.0 and const_scalar(graph, node.input[2]) == -1.0
            and const_scalar(graph, cond.input[1]) == 0.0
            and all(c.op_type == "Where" and c.input[0] == cond.output[0] for c in graph.consumers(cond.output[0]))):
        return cond.input[0], [cond.name]
    return None


def _sign_sign_form(graph: Graph, node: onnx.NodeProto) -> tuple[str, list[str]] | None:
    """(source, absorbed helper nodes) when ``node`` is the outer Sign of ``Sign(Sign(x) + c)``."""
    add = graph.producer(node.input[0]) if node.op_type == "Sign" else None
    if add is None or add.op_type != "Add":
        return None
    inner_in, const_in = add.input
    if const_in not in graph.consts:
        inner_in, const_in = const_in, inner_in
    inner = graph.producer(inner_in)
    c = const_scalar(graph, const_in)
    if (inner is not None and inner.op_type == "Sign" and c is not None and 0.0 < c < 1.0
            and len(graph.consumers(add.output[0])) == 1 and len(graph.consumers(inner.output[0])) == 1):
        return inner.input[0], [add.name, inner.name]
    return None


def _conv_data_readers(graph: Graph, tensor: str) -> list[onnx.NodeProto] | None:
    """The Convs reading ``tensor`` as their data input (directly or through Pads), or None if anything
    else reads it."""
    if tensor == graph.output_name:
        return None
    convs = []
    for reader in graph.consumers(tensor):
        behind = _convs_behind(graph, reader, tensor)
        if behind is None:
            return None
        convs += behind
    return convs


def _convs_behind(graph: Graph, reader: onnx.NodeProto, tensor: str) -> list[onnx.NodeProto] | None:
    """``[reader]`` when it is a Conv reading ``tensor`` as data, the Convs behind it when it is a Pad of
    ``tensor`` read only by Convs, else None."""
    if reader.op_type == "Conv" and reader.input[0] == tensor and tensor not in reader.input[1:]:
        return [reader]
    if reader.op_type == "Pad" and reader.input[0] == tensor:
        return _conv_data_readers(graph, reader.output[0])
    return None


def _copy_for_convs(graph: Graph, sign: onnx.NodeProto) -> str | None:
    """A plain Sign read by convolutions (through Pads) and by other ops: a copy of the Sign for the
    convolutions, which becomes their binarizer, while the others keep the float Sign (torch
    semantics). The copy's output, or None when no convolution reads the Sign."""
    out = sign.output[0]
    readers = [r for r in graph.consumers(out) if _convs_behind(graph, r, out)]
    if not readers:
        return None
    copy = helper.make_node("Sign", [sign.input[0]], [f"{out}/binary"], name=f"{sign.name}/binary")
    graph.nodes.insert(graph.nodes.index(sign) + 1, copy)
    graph.shapes[copy.output[0]] = graph.shapes[out]
    for reader in readers:
        reader.input[0] = copy.output[0]
    graph.rewrites.add(copy.output[0], "plain Sign also read by other ops: copied for the convolutions")
    return copy.output[0]


def _scaled_weight(graph: Graph, conv: onnx.NodeProto, scale: float) -> None:
    """Point ``conv`` at a new constant weight ``W * scale``."""
    name = f"{conv.input[1]}*{scale:g}@{conv.name}"
    graph.consts[name] = (graph.consts[conv.input[1]].astype(np.float64) * scale).astype(np.float32)
    graph.shapes[name] = graph.consts[name].shape
    graph.rewrites.move(conv.input[1], name)
    graph.rewrites.add(name, f"scale {scale:g} after the binarizer folded into the weights")
    conv.input[1] = name


def _fold_scale(graph: Graph, binarized: str, mul: onnx.NodeProto) -> None:
    """Fold ``binarized * c`` into every Conv that reads it (through Pads); drop the Mul when unused."""
    other = mul.input[1] if mul.input[0] == binarized else mul.input[0]
    c = const_scalar(graph, other)
    scaled = mul.output[0]
    if c is None or c == 0.0 or graph.shapes.get(scaled) != graph.shapes.get(binarized):
        return
    readers = _conv_data_readers(graph, scaled)
    if not readers or any(r.input[1] not in graph.consts for r in readers):
        return
    for reader in graph.consumers(scaled):
        if reader.op_type == "Pad":
            value = float(graph.consts[reader.input[2]].ravel()[0]) if len(reader.input) > 2 and reader.input[2] else 0.0
            if value != 0.0:
                name = f"{reader.name}/value_over_{c:g}"
                graph.consts[name] = np.array(value / c, dtype=np.float32)
                while len(reader.input) < 3:
                    reader.input.append("")
                reader.input[2] = name
        reader.input[0] = binarized
    for conv in readers:
        _scaled_weight(graph, conv, c)
    graph.nodes.remove(mul)


def find(graph: Graph) -> None:
    """Fill ``graph.binarizers``, ``binarizer_nodes`` and ``plain_signs``; fold constant scales after a
    binarizer into the convolutions (see the module docstring); record what was recognised."""
    candidates: dict[str, tuple[str, str]] = {}  # binarized tensor -> (source, form)
    absorbed: set[str] = set()
    for node in graph.nodes:
        for form, match in ((WHERE_FORM, _where_form), (SIGN_SIGN_FORM, _sign_sign_form)):
            found = match(graph, node)
            if found is not None:
                candidates[node.output[0]] = (found[0], form)
                absorbed.update(found[1])
    for node in graph.nodes:
        if node.op_type == "Sign" and node.name not in absorbed and node.output[0] not in candidates:
            candidates[node.output[0]] = (node.input[0], PLAIN_SIGN)
    for binarized in candidates:
        for reader in graph.consumers(binarized):
            if reader.op_type == "Mul":
                _fold_scale(graph, binarized, reader)
    for binarized, (source, form) in list(candidates.items()):
        if form == PLAIN_SIGN:
            if not _conv_data_readers(graph, binarized):
                # a float Sign (torch semantics, lowered as tf.sign), unless convolutions read it too
                binarized = _copy_for_convs(graph, graph.producer(binarized))
                if binarized is None:
                    continue
            graph.plain_signs.add(binarized)
        graph.binarizers[binarized] = source
        graph.rewrites.add(binarized, f"binarizer recognised: {form}")
    graph.binarizer_nodes.update(absorbed)


_ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Neg")


def sign_residue(graph: Graph, tensor: str, depth: int = 4) -> str:
    """Why ``tensor`` is not binarized although a sign feeds it through arithmetic (a straight-through
    estimator that is not the identity at inference, e.g. a scaled soft sign), else ""."""
    node = graph.producer(tensor)
    frontier, ops = [node] if node is not None and node.op_type in _ARITHMETIC else [], set()
    for _ in range(depth):
        ahead = []
        for node in frontier:
            ops.add(node.op_type)
            for name in node.input:
                producer = graph.producer(name)
                if name in graph.binarizers or (producer is not None and producer.op_type == "Sign"):
                    return (f"its input is not a binarizer: a sign combined by {'/'.join(sorted(ops))} with terms "
                            "that do not cancel at inference (not an identity straight-through estimator)")
                if producer is not None and producer.op_type in _ARITHMETIC:
                    ahead.append(producer)
        frontier = ahead
    return ""
