"""PyTorch -> ONNX export in the LCE form, and PyTorch vs ONNX Runtime vs LCE on exported models.

These tests use torch (the export side); the convert stage itself is tested without torch in
tests/convert. The exported-form test net mirrors train/quant's eval forward: ``x - tau`` ->
``where(x >= 0, 1, -1)`` -> ``F.pad(value=1)`` -> conv with +/-alpha weights -> BN (+ residual).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from onnx import numpy_helper
from torch import nn

from train.export import ExportError, check_against_onnxruntime, export_onnx

REPO = Path(__file__).resolve().parents[2]


class ExportedBinaryConv(nn.Module):
    """A binary conv in the exported form, with fixed random threshold, signs and per-channel scales."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, gen: torch.Generator) -> None:
        super().__init__()
        self.stride, self.pad = stride, (k - 1) // 2
        self.register_buffer("tau", 0.2 * torch.randn(1, cin, 1, 1, generator=gen))
        signs = torch.where(torch.randn(cout, cin, k, k, generator=gen) >= 0, 1.0, -1.0)
        alpha = 0.2 + torch.rand(cout, 1, 1, 1, generator=gen)
        self.register_buffer("weight", signs * alpha)
        self.bn = nn.BatchNorm2d(cout)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5, generator=gen)
            self.bn.bias.normal_(0, 0.2, generator=gen)
            self.bn.running_mean.normal_(0, 0.5, generator=gen)
            self.bn.running_var.uniform_(0.5, 2.0, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = torch.where(x - self.tau >= 0, 1.0, -1.0)
        if self.pad:
            xb = F.pad(xb, (self.pad,) * 4, value=1.0)
        return self.bn(F.conv2d(xb, self.weight, stride=self.stride))


class ExportedMatrix(nn.Module):
    """Binary k 1/3/5/7 x stride 1/2 on an even (8) and an odd (7) input, residual where shapes allow."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(ch, ch, 2)  # 8x8 -> 7x7 gives the odd input
        self.configs = list(itertools.product((8, 7), (1, 3, 5, 7), (1, 2)))
        self.convs = nn.ModuleList(ExportedBinaryConv(ch, ch, k, s, gen) for _, k, s in self.configs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        odd = self.stem(x)
        outs = []
        for (size, _, stride), conv in zip(self.configs, self.convs, strict=True):
            src = x if size == 8 else odd
            y = conv(src)
            outs.append(torch.flatten(y + src if stride == 1 else y, 1))
        return torch.cat(outs, dim=1)


def test_export_writes_the_lce_form(tmp_path):
    model = ExportedMatrix(ch=8).eval()
    path = export_onnx(model, (8, 8, 8), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert {"GreaterOrEqual", "Where", "Pad", "Conv"} <= ops
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 8, 8, 8]
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node
                   if n.op_type == "Constant"})
    pad_values = {float(consts[n.input[2]]) for n in proto.graph.node if n.op_type == "Pad"}
    assert pad_values == {1.0}
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_rejects_bad_shapes_and_old_opsets(tmp_path):
    model = ExportedMatrix(ch=8)
    with pytest.raises(ExportError, match="batch 1"):
        export_onnx(model, (2, 8, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, (8, 8, 8), tmp_path / "m.onnx", opset=13)
    assert not (tmp_path / "m.onnx").exists()


class _GridWithOneFlip(nn.Module):
    """A 0.01-step grid whose first value rounds one step up: the flip of a value within float rounding
    of a half step; ``scale`` > 1: a wrong export."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.fake_quantize_per_tensor_affine(x, 0.01, 0, -128, 127).flatten(1) * self.scale
        return y + F.one_hot(torch.tensor([0]), y.shape[1]) * 0.01


def _grid_proto(with_grid: bool) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Flatten", ["d"], ["y"])] if with_grid else [helper.make_node("Flatten", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "grid", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor("s", TensorProto.FLOAT, [], [0.01]),
                               helper.make_tensor("z", TensorProto.INT8, [], [0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_export_check_tolerates_a_grid_flip_but_not_a_wrong_export():
    shape = (1, 1, 4, 4)
    assert check_against_onnxruntime(_GridWithOneFlip(), _grid_proto(with_grid=True), shape) == pytest.approx(0.01)
    with pytest.raises(ExportError, match="not faithful"):  # a float graph gets no such tolerance
        check_against_onnxruntime(_GridWithOneFlip(), _grid_proto(with_grid=False), shape)
    with pytest.raises(ExportError, match="not faithful"):
        check_against_onnxruntime(_GridWithOneFlip(scale=2.0), _grid_proto(with_grid=True), shape)


@pytest.mark.slow
def test_pytorch_onnxruntime_lce_agree_on_the_exported_matrix(tmp_path):
    from convert import engines
    from convert.keras_builder import build_keras_model
    from convert.lce import convert_lce, op_histogram
    from convert.onnx_graph import load_graph

    model = ExportedMatrix().eval()
    path = export_onnx(model, (32, 8, 8), tmp_path / "m.onnx")
    built = build_keras_model(load_graph(path))
    flatbuffer = convert_lce(built.model)
    assert op_histogram(flatbuffer).get("LceBconv2d", 0) == len(model.configs)
    x = torch.randn(3, 32, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    outputs = {"onnxruntime": engines.run_onnx(path, x.numpy()),
               "lce": engines.run_lce(flatbuffer, engines.nchw_to_nhwc(x.numpy()))}
    widths = [32 * ((size + 2 * ((k - 1) // 2) - k) // s + 1) ** 2 for size, k, s in model.configs]
    for engine, got in outputs.items():
        offset = 0
        for config, width in zip(model.configs, widths, strict=True):
            r, g = ref[:, offset:offset + width], got[:, offset:offset + width]
            offset += width
            assert np.abs(r - g).max() <= 1e-5 * max(1.0, np.abs(r).max()) + 1e-5, (engine, config)


@pytest.mark.slow
def test_export_run_then_convert_run(tmp_path):
    """Train the smoke config with a binary method for a few steps, export the run, convert it."""
    from bitat_edge.manifest import load as load_manifest
    from train.config import load_config
    from train.engine import train
    from train.export import export_run

    cfg = load_config(REPO / "configs" / "smoke_synthetic.yaml",
                      ["method.name=ste", "optim.epochs=1", "run.max_steps=3", "data.eval_limit=40"])
    run_dir = tmp_path / "run"
    train(cfg, run_dir, resume=False)
    export_run(run_dir)
    manifest = load_manifest(run_dir / "manifest.json")
    assert manifest.input.shape == [1, 1, 16, 16] and manifest.input.layout == "NCHW"
    assert any(layer.precision.is_binary for layer in manifest.layers)
    with np.load(run_dir / "eval.npz") as data:
        assert data["x"].shape == (40, 1, 16, 16) and data["x"].dtype == np.float32
        assert data["y"].dtype == np.int64 and data["torch_logits"].shape == (40, 10)
    with np.load(run_dir / "calib.npz") as data:
        assert data["x"].shape[1:] == (1, 16, 16) and len(data["x"]) > 0

    from bitat_edge.cli import main

    result = CliRunner().invoke(main, ["convert", "run", str(run_dir)])
    assert result.exit_code == 0, result.output
    deploy = run_dir / "deploy"
    report = json.loads((deploy / "report.json").read_text())
    binary_layers = sum(layer.precision.is_binary for layer in manifest.layers)
    assert report["lce_bconv2d"] == binary_layers and report["binary_check"]["ok"]
    lce = report["parity"]["engines"]["lce"]
    assert report["parity"]["reference"] == "pytorch" and lce["agreement"] == 1.0, lce["listed"]
    bundle = load_manifest(deploy / "manifest.json")
    assert bundle.deploy.input_shape == [1, 16, 16, 1] and bundle.deploy.input_layout == "NHWC"
    with np.load(deploy / "eval.npz") as data:
        assert data["x"].shape == (40, 16, 16, 1)
