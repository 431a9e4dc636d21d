"""The int8 TFLite model of a graph with integer grids (QDQ, ``convert.qdq``), built quantization-aware so
the TFLite converter keeps the grids exactly.

Post-training calibration (``convert.tflite.convert_int8``) chooses every scale itself: a weight grid
would be re-quantized at ``max|w| / 127`` and lose its codes. Instead:

1. build the float model (quantize points as exact float rounding) and run the calibration images
   through it, recording every tensor's minimum and maximum;
2. rebuild it quantization-aware (``Builder(graph, ranges)``): a ``FakeQuant`` of its measured range after
   every tensor, ``FakeQuant`` with exactly each quantize point's range, grid convs whose kernels are
   fake-quantized onto their grids (BatchNorm already folded into them by the loader);
3. convert with the default optimizations and no representative dataset: the converter takes every
   scale and zero point from the ``FakeQuant`` ops, so a grid conv's int8 weights are its ONNX codes.

A tensor whose only reader is a quantize point (the ``Clip`` before it) gets the point's range: the
value is rounded once, onto the point's grid. Float32 input and output are kept, as in the other models.

Only the integer part of the graph is calibrated: the quantize points, what grid convs read and write,
and the tensors computed from them. What comes before (the input and a float stem: the layers the
source model keeps at full precision) stays float up to the first int8 tensor, which the converter
makes the one ``QUANTIZE`` of the input side. Rounding the input image and the stem's tensors to 256
calibrated levels instead moves values feeding a low-bit quantize point across its rounding boundaries:
on UniQ W2A2 the image grid (step 1 / (255 std)) is not aligned with an int8 grid that has 0 as a
level, and this prefix alone cost 1-2 % of top-1 agreement.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from convert.errors import ConvertError
from convert.keras_builder import Builder, build_keras_model
from convert.onnx_graph import Graph


def _point_read_only(graph: Graph, tensor: str) -> tuple[float, float] | None:
    """The range of the quantize point(s) that alone read ``tensor`` (one range), else None."""
    readers = graph.consumers(tensor)
    if not readers or not all(r.name in graph.absorbed_nodes for r in readers):
        return None
    ranges = {p.range for p in graph.quantize_points.values() if p.source == tensor}
    return ranges.pop() if len(ranges) == 1 else None


def integer_part(graph: Graph) -> set[str]:
    """The quantize points, the inputs and outputs of grid convs and every tensor computed from them
    (module docstring)."""
    grid_convs = [n for n in graph.nodes if n.op_type == "Conv" and n.input[1] in graph.weight_grids]
    found = set(graph.quantize_points) | {n.input[0] for n in grid_convs} | {n.output[0] for n in grid_convs}
    for node in graph.nodes:  # topological order
        if any(t in found for t in node.input):
            found.update(node.output)
    return found


def calibration_ranges(graph: Graph, calib_nhwc: np.ndarray) -> dict[str, tuple[float, float]]:
    """The (min, max) over the calibration images in the float model of each tensor of the integer part,
    and the fixed ranges of the tensors only quantize points read (see the module docstring)."""
    if len(calib_nhwc) == 0:
        raise ConvertError("the calibration set is empty; int8 quantization needs calibration images")
    builder = Builder(graph)
    builder.build()
    fixed = {t: r for t in builder.tensors if (r := _point_read_only(graph, t)) is not None}
    integer = integer_part(graph)
    names = [t for t in builder.tensors if t in integer and t not in graph.quantize_points and t not in fixed]
    if not names:
        return fixed
    probe = tf.keras.Model(builder.tensors[graph.input_name], [builder.tensors[t] for t in names])

    @tf.function(autograph=False)
    def extremes(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # one graph call per image, not one op per tensor
        values = probe(x, training=False)
        return tf.stack([tf.reduce_min(v) for v in values]), tf.stack([tf.reduce_max(v) for v in values])

    low = np.full(len(names), np.inf)
    high = np.full(len(names), -np.inf)
    for x in calib_nhwc:
        image_low, image_high = extremes(tf.constant(x[None], dtype=tf.float32))
        low, high = np.minimum(low, image_low.numpy()), np.maximum(high, image_high.numpy())
    return {t: (float(a), float(b)) for t, a, b in zip(names, low, high, strict=True)} | fixed


def convert_int8_qat(graph: Graph, calib_nhwc: np.ndarray) -> bytes:
    """The int8 flatbuffer of ``graph`` with its grids kept (module docstring); float32 input and output."""
    model = build_keras_model(graph, calibration_ranges(graph, calib_nhwc)).model
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return bytes(converter.convert())
    except Exception as exc:
        raise ConvertError(f"int8 conversion of the quantization-aware model failed "
                           f"({str(exc).splitlines()[0]})") from exc


def grid_check(graph: Graph, flatbuffer: bytes) -> dict[str, object]:
    """Whether the int8 flatbuffer holds every weight grid of ``graph`` exactly: for each grid conv, a conv
    of the flatbuffer whose int8 weights are the grid's codes (output-channel signs may differ: BatchNorm
    folding can flip them) and whose scales are the grid's (to float32 rounding)."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    filters = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D") and details[op["inputs"][1]]["dtype"] == np.int8:
            weight = details[op["inputs"][1]]
            filters.append((op["op_name"] == "DEPTHWISE_CONV_2D", interpreter.get_tensor(weight["index"]),
                            np.asarray(weight["quantization_parameters"]["scales"], dtype=np.float64)))
    missing = []
    depthwise_weights = {n.input[1] for n in graph.nodes if n.name in graph.conv_plans
                         and graph.conv_plans[n.name].depthwise}
    for tensor, grid in graph.weight_grids.items():
        depthwise = tensor in depthwise_weights
        expected = (grid.codes[:, 0].transpose(1, 2, 0)[None] if depthwise
                    else grid.codes.transpose(0, 2, 3, 1))  # OIHW -> OHWI, depthwise -> 1HWC
        if not any(dw == depthwise and codes.shape == expected.shape and np.array_equal(np.abs(codes), np.abs(expected))
                   and np.allclose(np.broadcast_to(scales, grid.scale.shape), grid.scale, rtol=1e-5)
                   for dw, codes, scales in filters):
            missing.append(tensor)
    return {"grid_convs": len(graph.weight_grids), "exact": len(graph.weight_grids) - len(missing), "missing": missing}

