"""The graph-simplification stage before constant folding and lowering: undo what a PyTorch BNN adds
around its binary layers for training, keeping the function the model computes at inference.

1. onnxoptimizer's exact local passes (``PASSES``): ``Identity`` removed (``detach`` leftovers),
   ``Constant`` nodes made initializers, equal initializers merged, common subexpressions merged, so
   that the two copies of ``f(x)`` in ``sign(x).detach() - f(x).detach() + f(x)`` become one tensor.
2. Straight-through-estimator expressions that are the identity at inference (``STE_RULES``):
   ``(u - v) + v``, ``v + (u - v)``, ``(u + v) - v``, ``(v + u) - v``, ``u + (v - v)``, ``(v - v) + u``
   and ``u - (v - v)`` become ``u`` when ``u`` has the result's shape. In exact arithmetic they equal
   ``u``; the exported float32 graph computes them with one rounding of ``max(|u|, |v|)``.
3. Clamps that do not change a sign: ``Clip(Sign(x), lo <= -1, hi >= 1)`` and ``Sign(Clip(x, lo < 0,
   hi > 0))`` become ``Sign(x)``; a ``Dropout`` outside training mode becomes its input.
4. onnxoptimizer's dead-end elimination (the estimator's ``Less``/``Cast``/``Mul`` nodes are unused now,
   and so are the duplicates common-subexpression elimination bypassed).

Every rewrite is recorded against the tensor it keeps (``Rewrites``) so the report can say, per
layer, why it became binary. Nothing here is specific to one exporter: the rules match tensors by name.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import onnx
import onnxoptimizer
from onnx import numpy_helper, shape_inference

PASSES = ["eliminate_identity", "extract_constant_to_initializer",
          "eliminate_duplicate_initializer", "eliminate_common_subexpression"]
CLEANUP_PASSES = ["eliminate_deadend", "eliminate_unused_initializer"]
STE_RULES = "(u - v) + v, v + (u - v), (u + v) - v, (v + u) - v, u + (v - v), (v - v) + u, u - (v - v)"
LOAD_RULE = ("(STE arithmetic)", f"`Add`/`Sub` trees that are the identity at inference: {STE_RULES}",
             "`u` (the straight-through estimator's gradient path is dropped); `Identity`, inference `Dropout` "
             "and clamps around a `Sign` that do not change it are removed first")


@dataclass
class Rewrites:
    """What the simplification did, by the tensor each rewrite kept (for the per-layer report)."""

    by_tensor: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, tensor: str, text: str) -> None:
        if text not in self.by_tensor[tensor]:
            self.by_tensor[tensor].append(text)

    def move(self, old: str, new: str) -> None:
        """``old`` was replaced by ``new``: what was recorded for ``old`` now belongs to ``new``."""
        for text in self.by_tensor.pop(old, []):
            self.add(new, text)

    def of(self, *tensors: str) -> tuple[str, ...]:
        """The rewrites recorded for any of ``tensors``, in order, without repeats."""
        seen: list[str] = []
        for tensor in tensors:
            seen += [t for t in self.by_tensor.get(tensor, []) if t not in seen]
        return tuple(seen)


class _Nodes:
    """The graph's producers, constants and static shapes; readers are rewired in place."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        self.shapes: dict[str, tuple[int, ...]] = {}
        for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            dims = info.type.tensor_type.shape.dim
            if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                self.shapes[info.name] = tuple(d.dim_value for d in dims)
        for name, value in self.consts.items():
            self.shapes[name] = tuple(value.shape)

    def op(self, tensor: str) -> onnx.NodeProto | None:
        return self.producer.get(tensor)

    def same_shape(self, a: str, b: str) -> bool:
        return a in self.shapes and self.shapes.get(a) == self.shapes.get(b)

    def replace(self, old: str, new: str) -> bool:
        """Every reader of ``old`` reads ``new`` (not done for a graph output); whether any did."""
        if old in self.outputs:
            return False
        replaced = False
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
                    replaced = True
        return replaced

    def scalar(self, tensor: str, default: float) -> float | None:
        """A constant input's single value (``default`` when the optional input is absent)."""
        if not tensor:
            return default
        value = self.consts.get(tensor)
        if value is None or value.size != 1:
            return None
        return float(value.ravel()[0])


def _ste_identity(nodes: _Nodes, node: onnx.NodeProto) -> tuple[str, str] | None:
    """``(u, what was removed)`` when ``node`` computes ``u`` by one of ``STE_RULES``."""
    if node.op_type not in ("Add", "Sub") or len(node.input) != 2:
        return None
    a, b = node.input
    pa, pb = nodes.op(a), nodes.op(b)

    def is_zero(p: onnx.NodeProto | None) -> bool:  # v - v
        return p is not None and p.op_type == "Sub" and p.input[0] == p.input[1]

    if node.op_type == "Add":
        if pa is not None and pa.op_type == "Sub" and pa.input[1] == b:
            return pa.input[0], "STE `a - b + b` removed"
        if pb is not None and pb.op_type == "Sub" and pb.input[1] == a:
            return pb.input[0], "STE `b + (a - b)` removed"
        if is_zero(pb):
            return a, "STE `a + (b - b)` removed"
        if is_zero(pa):
            return b, "STE `(b - b) + a` removed"
        return None
    if pa is not None and pa.op_type == "Add" and b in pa.input:
        return pa.input[1] if pa.input[0] == b else pa.input[0], "STE `(a + b) - b` removed"
    if is_zero(pb):
        return a, "STE `a - (b - b)` removed"
    return None


def _clamp_around_sign(nodes: _Nodes, node: onnx.NodeProto) -> tuple[str, str] | None:
    """``(x, what)`` for a Clip around a Sign or a Sign of a Clip that leaves the sign unchanged."""
    if node.op_type == "Clip":
        inner = nodes.op(node.input[0])
        low = nodes.scalar(node.input[1] if len(node.input) > 1 else "", -math.inf)
        high = nodes.scalar(node.input[2] if len(node.input) > 2 else "", math.inf)
        if inner is not None and inner.op_type == "Sign" and low is not None and high is not None \
                and low <= -1.0 and high >= 1.0:
            return inner.output[0], f"clamp({low:g}, {high:g}) after the sign dropped"
    return None


def _sign_of_clamp(nodes: _Nodes, node: onnx.NodeProto) -> str | None:
    """The Clip's input when ``node`` is ``Sign(Clip(x, lo < 0, hi > 0))``."""
    if node.op_type != "Sign":
        return None
    clip = nodes.op(node.input[0])
    if clip is None or clip.op_type != "Clip":
        return None
    low = nodes.scalar(clip.input[1] if len(clip.input) > 1 else "", -math.inf)
    high = nodes.scalar(clip.input[2] if len(clip.input) > 2 else "", math.inf)
    if low is not None and high is not None and low < 0.0 < high:
        return clip.input[0]
    return None


def _inference_dropout(nodes: _Nodes, node: onnx.NodeProto) -> tuple[str, str] | None:
    """``(x, what)`` for a Dropout outside training mode (the identity; its mask output unused)."""
    if node.op_type != "Dropout" or (len(node.output) > 1 and node.output[1]):
        return None
    training = nodes.scalar(node.input[2] if len(node.input) > 2 else "", 0.0)
    return (node.input[0], "inference Dropout removed") if training == 0.0 else None


def _rewrite(model: onnx.ModelProto, rewrites: Rewrites) -> bool:
    """One sweep of the STE and clamp rules over ``model`` (in place); whether anything changed."""
    nodes = _Nodes(model)
    changed = False
    for node in model.graph.node:
        source = _sign_of_clamp(nodes, node)
        if source is not None:
            node.input[0] = source
            rewrites.add(node.output[0], "clamp before the sign dropped")
            changed = True
            continue
        match = _ste_identity(nodes, node) or _clamp_around_sign(nodes, node) or _inference_dropout(nodes, node)
        if match is None:
            continue
        kept, text = match
        out = node.output[0]
        if not nodes.same_shape(kept, out) or not nodes.replace(out, kept):
            continue
        rewrites.move(out, kept)
        rewrites.add(kept, text)
        changed = True
    return changed


def simplify(model: onnx.ModelProto, rewrites: Rewrites) -> onnx.ModelProto:
    """The model with the BNN training scaffolding removed (see the module docstring); what was done is
    added to ``rewrites``."""
    model = onnxoptimizer.optimize(model, PASSES)
    weights = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] not in weights:
            rewrites.add(node.input[1], "weight expression folded to a constant")
    while _rewrite(model, rewrites):
        pass
    return onnxoptimizer.optimize(model, CLEANUP_PASSES)

