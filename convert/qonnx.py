"""QONNX's ``BipolarQuant`` (brevitas' binary quantizers) rewritten as standard ONNX ops.

QONNX (github.com/fastmachinelearning/qonnx, ``custom_op/general/bipolar_quant.py``) defines
``BipolarQuant(x, scale) = where(x >= 0, 1, -1) * scale``. The rewrite is that expression:
``Where(GreaterOrEqual(x, 0), 1, -1)``, the binarizer form LCE turns into ``LceQuantize``, times
``scale`` unless the scale is 1. On a weight it folds to a +/-scale constant; on an activation the
scale is folded into the next convolution's weights (``convert.binarizers``). Any other QONNX op
(``Quant``, ``Trunc``, ...) is left alone and rejected by the loader as a custom-domain op.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from convert.errors import UnsupportedOpError

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
LOAD_RULE = ("BipolarQuant", "QONNX (domain `qonnx.custom_op.general`), constant scale",
             "`Where(GreaterOrEqual(x, 0), 1, -1)` times the scale: a binarizer, or a +/-scale weight")


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def standardise(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every QONNX ``BipolarQuant`` replaced by standard ops (the model itself if it has none)."""
    if not any(n.op_type == "BipolarQuant" and n.domain in QONNX_DOMAINS for n in model.graph.node):
        return model
    consts = _constants(model)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "BipolarQuant" or node.domain not in QONNX_DOMAINS:
            nodes.append(node)
            continue
        name = node.name or f"BipolarQuant_{i}"
        scale = consts.get(node.input[1])
        if scale is None:
            raise UnsupportedOpError(name, "BipolarQuant", "the scale must be a constant")
        x, out = node.input[0], node.output[0]
        zero, one, minus_one = (f"{name}/{k}" for k in ("zero", "one", "minus_one"))
        inits += [numpy_helper.from_array(np.array(v, dtype=np.float32), n)
                  for n, v in ((zero, 0.0), (one, 1.0), (minus_one, -1.0))]
        unit = bool(np.all(scale == 1.0))
        signs = out if unit else f"{name}/signs"
        nodes += [helper.make_node("GreaterOrEqual", [x, zero], [f"{name}/ge"], name=f"{name}/GreaterOrEqual"),
                  helper.make_node("Where", [f"{name}/ge", one, minus_one], [signs], name=f"{name}/Where")]
        if not unit:
            nodes.append(helper.make_node("Mul", [signs, node.input[1]], [out], name=f"{name}/Mul"))
    standard = onnx.ModelProto()
    standard.CopyFrom(model)
    del standard.graph.node[:]
    standard.graph.node.extend(nodes)
    standard.graph.initializer.extend(inits)
    kept = [o for o in standard.opset_import if o.domain not in QONNX_DOMAINS]
    if not any(n.domain in QONNX_DOMAINS for n in nodes):
        del standard.opset_import[:]
        standard.opset_import.extend(kept)
    return standard
