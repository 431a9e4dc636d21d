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

Two forms (``activation_bits``):

- **int8** (8): every calibrated tensor int8, as above. Exact grids, but on UniQ W2A2 / QAF only ~98 %
  top-1 agreement with PyTorch: the int8 rounding of the tensors between grid layers (steps 0.03-0.1)
  and the int32 conv biases (rounded to ``input scale x weight scale``, up to 0.13 at a 2-bit input)
  move values across the rounding boundaries of the next low-bit quantize point.
- **int16x8** (16, TFLite's 16x8 kernels): the grid convs read int16 tensors and write int16 ones (int8
  weights, the grids exactly), everything between them stays float. A quantize point becomes a clip
  to its range and an int16 tensor of step exactly its scale (``qdq_layers.int16_grid_of``: the
  rounding onto the grid, and every level an int16 code); other grid conv inputs and the sum of
  products each conv writes get symmetric int16 ranges from calibration; the bias is added after the
  conv in float. Ops TFLite has no int16 kernel for, or that read a constant the quantization-aware
  converter would make int8 (``ADD``/``SUB``/``PRELU`` with a constant), are therefore float between
  ``DEQUANTIZE`` and ``QUANTIZE``. The converter writes int32 biases for 16x8 convs, which TFLite's
  kernels read as int64 (``widen_int16_conv_biases``).

The convert pipeline (``convert.pipeline.GRID_INT8_FORM``) ships the int16x8 form as the bundle's ``int8``
model kind and records the form in the deploy manifest and the report (``int8_form``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bitat_edge.manifest import INTEGER_FORMS, IntegerForm
from convert.errors import ConvertError
from convert.keras_builder import Builder, build_keras_model
from convert.onnx_graph import Graph

ACTIVATION_BITS: dict[IntegerForm, int] = {"int8": 8, "int16x8": 16}
"""The ``activation_bits`` of ``convert_int8_qat`` that builds each integer form (module docstring)."""
assert set(ACTIVATION_BITS) == set(INTEGER_FORMS)  # noqa: S101 - one list of forms


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


def grid_conv_tensors(graph: Graph) -> set[str]:
    """The inputs and outputs of the grid convs (BatchNorm folded in): the int16 tensors of a 16x8 model."""
    convs = [n for n in graph.nodes if n.op_type == "Conv" and n.input[1] in graph.weight_grids]
    return {n.input[0] for n in convs} | {n.output[0] for n in convs}


def calibration_ranges(graph: Graph, calib_nhwc: np.ndarray,
                       activation_bits: int = 8) -> dict[str, tuple[float, float]]:
    """The (min, max) over the calibration images in the float model of each tensor of the integer part
    (16-bit: of the grid convs' inputs and outputs), and with 8-bit activations the fixed ranges of the
    tensors only quantize points read (module docstring)."""
    if len(calib_nhwc) == 0:
        raise ConvertError("the calibration set is empty; int8 quantization needs calibration images")
    builder = Builder(graph)
    builder.build()
    fixed = {} if activation_bits == 16 else {
        t: r for t in builder.tensors if (r := _point_read_only(graph, t)) is not None}
    integer = integer_part(graph) if activation_bits == 8 else grid_conv_tensors(graph)
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


def convert_int8_qat(graph: Graph, calib_nhwc: np.ndarray, activation_bits: int = 8) -> bytes:
    """The int8 flatbuffer of ``graph`` with its grids kept (module docstring); float32 input and output."""
    ranges = calibration_ranges(graph, calib_nhwc, activation_bits)
    model = build_keras_model(graph, ranges, activation_bits).model
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if activation_bits == 16:
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                               ops.TFLITE_BUILTINS]
    try:
        flatbuffer = bytes(converter.convert())
    except Exception as exc:
        raise ConvertError(f"int8 conversion of the quantization-aware model failed "
                           f"({str(exc).splitlines()[0]})") from exc
    return widen_int16_conv_biases(flatbuffer) if activation_bits == 16 else flatbuffer


def widen_int16_conv_biases(flatbuffer: bytes) -> bytes:
    """``flatbuffer`` with the int32 biases of its int16-input convs stored as int64.

    The quantization-aware converter writes int32 biases also for 16x8 convs (its ``bias_type`` option
    is for post-training quantization only), but TFLite's 16x8 ``CONV_2D`` / ``DEPTHWISE_CONV_2D``
    kernels read an int64 bias: from an int32 buffer they read past it (garbage from channel C/2 on)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    kinds = (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    convs = {i for i, code in enumerate(model.operatorCodes)
             if max(code.builtinCode, code.deprecatedBuiltinCode) in kinds}
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.opcodeIndex not in convs or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            data, bias = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[2]]
            if data.type == schema.TensorType.INT16 and bias.type == schema.TensorType.INT32:
                widened = schema.BufferT()  # a new buffer: the converter shares equal constants' buffers
                int32 = np.frombuffer(bytes(model.buffers[bias.buffer].data), "<i4")
                widened.data = int32.astype("<i8").view(np.uint8)
                model.buffers.append(widened)
                bias.buffer, bias.type = len(model.buffers) - 1, schema.TensorType.INT64
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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

