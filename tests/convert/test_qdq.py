"""Integer grids (QuantizeLinear / DequantizeLinear) through the converter: found on load, BatchNorm folded
into grid convs, exact float rounding in the LCE / fp32 models, and an int8 model whose grid convs hold
exactly the ONNX codes and whose quantize points hold exactly the ONNX scale and zero point."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from onnx_nets import OnnxNet

from bitat_edge.manifest import InputSpec, Manifest
from convert.errors import UnsupportedOpError
from convert.onnx_graph import load_graph
from convert.pipeline import ConvertRequest, convert
from convert.qdq import WeightGrid, activation_bits, conv_precision

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
CLASSES = [f"c{i}" for i in range(4)]
ACT_SCALE, WEIGHT_STEP = 0.25, 0.125


def _grid_weight(net: OnnxNet, codes: np.ndarray, scale: float | np.ndarray, axis: int = 0) -> str:
    """DequantizeLinear(int8 codes, scale, 0): a constant weight on an integer grid."""
    scale = np.asarray(scale, dtype=np.float32)
    zero = np.zeros(scale.shape, dtype=np.int8)
    return net.op("DequantizeLinear", [net.const(codes, np.int8), net.const(scale), net.const(zero, np.int8)],
                  axis=axis)


def _quantize_point(net: OnnxNet, x: str, levels: int) -> str:
    """Clip(x, 0, levels * s) -> QuantizeLinear(s, -128) -> DequantizeLinear: UniQ's activation form."""
    x = net.op("Clip", [x, net.const(0.0), net.const(levels * ACT_SCALE)])
    scale, zero = net.const(ACT_SCALE), net.const(-128, np.int8)
    return net.op("DequantizeLinear", [net.op("QuantizeLinear", [x, scale, zero]), scale, zero])


def _qdq_net(path, seed=0):
    """Float stem -> 2-bit point -> 2-bit grid conv -> BN -> PReLU -> 4-bit grid depthwise -> 1x1 -> head."""
    net = OnnxNet((1, 2, 8, 8), seed=seed)
    r = net.rng
    x = net.conv(net.input, r.normal(0, 0.5, (8, 2, 3, 3)).astype(np.float32), pads=1)
    x = _quantize_point(net, net.op("Relu", [x]), 3)
    codes = r.choice([-3, -1, 1, 3], size=(8, 8, 3, 3))
    x = net.op("Conv", [x, _grid_weight(net, codes, WEIGHT_STEP)], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
               name="grid_conv")
    x = net.op("PRelu", [net.bn(x, 8), net.const(r.uniform(0.05, 0.3, (8, 1, 1)))])
    dw_codes = r.integers(-8, 8, size=(8, 1, 3, 3))
    x = net.op("Conv", [x, _grid_weight(net, dw_codes, 0.05)], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8,
               strides=[2, 2], name="grid_dw")
    x = net.conv(x, r.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32))
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])])
    logits = net.op("Gemm", [x, net.const(r.normal(0, 0.5, (4, 8))), net.const(np.zeros(4))], transB=1)
    net.save(path, logits, output_shape=[1, 4])
    return codes, dw_codes


def test_loader_finds_grids_and_points_and_folds_batchnorm(tmp_path):
    codes, dw_codes = _qdq_net(tmp_path / "m.onnx")
    graph = load_graph(tmp_path / "m.onnx")
    assert "BatchNormalization" not in graph.op_histogram()  # folded into the grid conv
    conv = next(n for n in graph.nodes if n.name == "grid_conv")
    dw = next(n for n in graph.nodes if n.name == "grid_dw")
    assert set(graph.weight_grids) == {conv.input[1], dw.input[1]}  # the unfolded weight's grid is gone
    grid = graph.weight_grids[conv.input[1]]
    assert np.array_equal(np.abs(grid.codes), np.abs(codes)) and not grid.per_tensor
    folded = graph.consts[conv.input[1]]
    assert np.allclose(folded, grid.codes * grid.scale[:, None, None, None], rtol=1e-6)
    assert grid.bits == 2 and conv_precision(graph, conv.input[1], conv.input[0]).weight_bits == 2
    assert activation_bits(graph, conv.input[0]) == 2  # Clip(0, 3 s) -> 4 levels
    (point,) = graph.quantize_points.values()
    assert (point.scale, point.zero_point, point.range) == (ACT_SCALE, -128, (0.0, 255 * ACT_SCALE))
    assert graph.weight_grids[dw.input[1]].per_tensor and graph.weight_grids[dw.input[1]].bits == 4
    assert str(conv_precision(graph, dw.input[1], dw.input[0])) == "w4a8"
    assert WeightGrid(np.array([[1.0, 3.0, -1.0]]), np.array([1.0])).bits == 2


def _convs(interpreter):
    """The conv ops of a TFLite interpreter, its tensor details by index, and each conv's tensor dtypes
    (inputs, then outputs)."""
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    types = [[details[i]["dtype"].__name__ for i in (*op["inputs"], *op["outputs"]) if i >= 0] for op in convs]
    return convs, details, types


def test_pipeline_deploys_a_grid_graph_in_the_int16x8_form_and_float_models_round_exactly(tmp_path):
    """The convert pipeline's integer model of a graph with grids is the int16x8 form (``model_int8.tflite``,
    named in the manifest and both reports); its grid convs read and write int16 and hold the grids exactly."""
    import tensorflow as tf

    from bitat_edge.manifest import load

    codes, dw_codes = _qdq_net(tmp_path / "m.onnx")
    Manifest(model_name="qdq", input=InputSpec(shape=[1, 2, 8, 8]), classes=CLASSES).save(tmp_path / "manifest.json")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.normal(0, 1, (48, 2, 8, 8)).astype(np.float32))
    result = convert(ConvertRequest(tmp_path / "m.onnx", tmp_path / "manifest.json", tmp_path / "out",
                                    eval_npz=tmp_path / "eval.npz"))
    engines = result.report["parity"]["engines"]
    assert engines["lce"]["max_abs_logit_diff"] < 1e-4 and engines["tflite_fp32"]["max_abs_logit_diff"] < 1e-4
    assert engines["tflite_int8"]["agreement"] >= 0.9
    precisions = {r["name"]: r["precision"] for r in result.report["layers"]["layers"]}
    assert precisions["grid_conv"] == "w2a2" and precisions["grid_dw"] == "w4a8"
    assert result.report["int8_grids"] == {"grid_convs": 2, "exact": 2, "missing": []}
    assert result.report["int8_form"] == "int16x8"
    gate = result.report["gate"]  # a grid graph's defaults: its integer model must agree like a deployment
    assert (gate["min_agreement"], gate["min_int8_agreement"]) == (0.995, 0.99) and gate["passed"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["int8_form"] == "int16x8"
    assert load(tmp_path / "out" / "manifest.json").deploy.int8_form == "int16x8"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "held exactly (codes and scales) by the int8 weights of the int16x8 flatbuffer: 2" in md
    assert "Integer model (`tflite_int8`): **int16x8** form (int8 weights, int16 activations" in md

    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "out" / "model_int8.tflite"))
    convs, details, types = _convs(interpreter)
    # float stem; the grid convs int16 x int8 -> int16 (int64 biases); the float 1x1 conv
    assert types[0] == types[3] == ["float32"] * 4
    assert all(t[:2] == ["int16", "int8"] and t[-1] == "int16" and set(t[2:-1]) <= {"int64"} for t in types[1:3])
    grid_conv, grid_dw = convs[1], convs[2]
    ohwi = interpreter.get_tensor(grid_conv["inputs"][1])
    assert np.array_equal(np.abs(ohwi), np.abs(codes).transpose(0, 2, 3, 1))  # codes kept, BN sign folded in
    source = details[grid_conv["inputs"][0]]["quantization_parameters"]
    assert source["scales"][0] == pytest.approx(ACT_SCALE, rel=1e-6) and source["zero_points"][0] == 0
    dw = interpreter.get_tensor(grid_dw["inputs"][1])
    assert np.array_equal(dw[0], dw_codes[:, 0].transpose(1, 2, 0))
    assert np.allclose(details[grid_dw["inputs"][1]]["quantization_parameters"]["scales"], 0.05, rtol=1e-6)


def test_int8_form_keeps_the_grids_with_int8_tensors(tmp_path):
    """The pure int8 form (``convert_int8_qat`` with 8-bit activations): from the first quantize point on every
    tensor int8, the grid convs hold exactly the ONNX codes, the point exactly its scale and zero point."""
    import onnxruntime as ort
    import tensorflow as tf

    from convert.engines import nchw_to_nhwc, run_tflite
    from convert.int8_qat import ACTIVATION_BITS, convert_int8_qat, grid_check

    codes, dw_codes = _qdq_net(tmp_path / "m.onnx")
    graph = load_graph(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(0, 1, (48, 2, 8, 8)).astype(np.float32)
    flatbuffer = convert_int8_qat(graph, nchw_to_nhwc(x), ACTIVATION_BITS["int8"])
    assert grid_check(graph, flatbuffer) == {"grid_convs": 2, "exact": 2, "missing": []}
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0]
                                  for i in range(len(x))])
    assert np.mean(run_tflite(flatbuffer, nchw_to_nhwc(x)).argmax(1) == onnx_logits.argmax(1)) >= 0.9

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    convs, details, _ = _convs(interpreter)
    # the float stem before the first quantize point stays float; from the point on, int8
    assert [str(details[op["inputs"][0]]["dtype"]) for op in convs] == ["<class 'numpy.float32'>"] + [
        "<class 'numpy.int8'>"] * 3
    grid_conv, grid_dw = convs[1], convs[2]
    weight = details[grid_conv["inputs"][1]]
    ohwi = interpreter.get_tensor(weight["index"])
    assert np.array_equal(np.abs(ohwi), np.abs(codes).transpose(0, 2, 3, 1))  # codes kept, BN sign folded in
    source = details[grid_conv["inputs"][0]]["quantization_parameters"]
    assert source["scales"][0] == pytest.approx(ACT_SCALE, rel=1e-6) and source["zero_points"][0] == -128
    dw = interpreter.get_tensor(details[grid_dw["inputs"][1]]["index"])
    assert np.array_equal(dw[0], dw_codes[:, 0].transpose(1, 2, 0))
    assert np.allclose(details[grid_dw["inputs"][1]]["quantization_parameters"]["scales"], 0.05, rtol=1e-6)


def test_only_the_integer_part_is_calibrated(tmp_path):
    """The input and the float stem before the first quantize point get no calibrated range; everything
    computed from the point or a grid conv does."""
    from convert.int8_qat import calibration_ranges, integer_part

    _qdq_net(tmp_path / "m.onnx")
    graph = load_graph(tmp_path / "m.onnx")
    (point_out,) = graph.quantize_points
    point = graph.quantize_points[point_out]
    stem = graph.producer(graph.producer(point.source).input[0])  # Relu before the point's Clip
    integer = integer_part(graph)
    assert graph.input_name not in integer and not set(stem.output) & integer and point_out in integer
    assert graph.output_name in integer
    ranges = calibration_ranges(graph, np.random.default_rng(0).normal(0, 1, (4, 8, 8, 2)).astype(np.float32))
    assert graph.input_name not in ranges and stem.output[0] not in ranges
    assert ranges[point.source] == point.range  # the Clip only the point reads: the point's range
    assert set(ranges) - {point.source} <= integer and graph.output_name in ranges


def test_a_grid_conv_without_quantize_point_reads_an_int8_tensor(tmp_path):
    """QAF's form (weight grids, no activation points): the tensor a grid conv reads is in the integer part,
    the float stem computing it is not."""
    from convert.int8_qat import integer_part

    net = OnnxNet((1, 2, 8, 8))
    stem = net.op("Relu", [net.conv(net.input, net.rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32), pads=1)])
    x = net.op("Conv", [stem, _grid_weight(net, net.rng.integers(-7, 8, (4, 4, 1, 1)), 0.1)], kernel_shape=[1, 1])
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])])
    net.save(tmp_path / "m.onnx", net.op("Gemm", [x, net.const(np.ones((3, 4)))], transB=1), output_shape=[1, 3])
    graph = load_graph(tmp_path / "m.onnx")
    integer = integer_part(graph)
    assert stem in integer and graph.output_name in integer
    assert graph.input_name not in integer and graph.producer(stem).input[0] not in integer  # the stem conv's output


def test_dequantize_of_a_tensor_without_its_quantize_is_a_clear_error(tmp_path):
    net = OnnxNet((1, 2, 4, 4))
    x = net.op("DequantizeLinear", [net.op("Cast", [net.input], to=3), net.const(0.5), net.const(0, np.int8)])
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])])
    net.save(tmp_path / "m.onnx", net.op("Gemm", [x, net.const(np.ones((2, 2)))]), output_shape=[1, 2])
    graph = load_graph(tmp_path / "m.onnx")
    assert not graph.has_qdq
    from convert.keras_builder import build_keras_model

    with pytest.raises(UnsupportedOpError, match="(Cast|DequantizeLinear)"):
        build_keras_model(graph)


def test_int8_agreement_benchmark_measures_the_rebuilt_int8_model(tmp_path):
    import onnxruntime as ort

    from benchmarks import int8_agreement

    run = tmp_path / "run"
    run.mkdir()
    _qdq_net(run / "model.onnx")
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (32, 2, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    np.savez(run / "eval.npz", x=x, y=logits.argmax(1), torch_logits=logits)
    np.savez(run / "calib.npz", x=x[:16])
    out = tmp_path / "int8.json"
    assert int8_agreement.main([str(run), "--results", str(out)]) == 0
    (entry,) = json.loads(out.read_text()).values()
    assert entry["images"] == 32 and entry["torch_top1"] == 1.0 and entry["agreement"] >= 0.9
    assert entry["int8_grids"] == {"grid_convs": 2, "exact": 2, "missing": []}
    assert entry["ops"].get("QUANTIZE", 0) >= 1 and entry["deployed_bytes"] > 0
    assert entry["form"] == "int16x8" and 0 <= entry["deployed_top1"] <= 1  # the pipeline's form by default


def test_int16x8_model_keeps_the_grids_with_int16_conv_activations(tmp_path):
    """The 16x8 form: grid convs read int16 tensors of step exactly the point's scale and write int16
    (int8 grid weights, int64 biases); the element-wise ops between them stay float; it agrees with ONNX."""
    import onnxruntime as ort
    import tensorflow as tf

    from convert.engines import nchw_to_nhwc, run_tflite
    from convert.int8_qat import convert_int8_qat, grid_check

    codes, _ = _qdq_net(tmp_path / "m.onnx")
    graph = load_graph(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(0, 1, (48, 2, 8, 8)).astype(np.float32)
    flatbuffer = convert_int8_qat(graph, nchw_to_nhwc(x[:16]), activation_bits=16)
    assert grid_check(graph, flatbuffer) == {"grid_convs": 2, "exact": 2, "missing": []}
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    convs = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    types = [[details[i]["dtype"].__name__ for i in (*op["inputs"], *op["outputs"]) if i >= 0] for op in convs]
    # float stem; the two grid convs int16 x int8 -> int16 (bias added after them in float); float 1x1 conv
    assert types[0] == types[3] == ["float32"] * 4
    assert all(t[:2] == ["int16", "int8"] and t[-1] == "int16" and set(t[2:-1]) <= {"int64"} for t in types[1:3])
    source = details[convs[1]["inputs"][0]]["quantization_parameters"]
    assert source["scales"][0] == pytest.approx(ACT_SCALE, rel=1e-6) and source["zero_points"][0] == 0
    weight = interpreter.get_tensor(convs[1]["inputs"][1])
    assert np.array_equal(np.abs(weight), np.abs(codes).transpose(0, 2, 3, 1))
    int16_ops = {op["op_name"] for op in ops if details[op["outputs"][0]]["dtype"] == np.int16}
    assert int16_ops <= {"CONV_2D", "DEPTHWISE_CONV_2D", "QUANTIZE", "PAD"}  # element-wise ops: float
    assert "ADD" in {op["op_name"] for op in ops if details[op["outputs"][0]]["dtype"] == np.float32}
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0]
                                  for i in range(len(x))])
    logits = run_tflite(flatbuffer, nchw_to_nhwc(x))
    assert np.mean(logits.argmax(1) == onnx_logits.argmax(1)) >= 0.95
    assert np.abs(logits - onnx_logits).max() < 0.1
