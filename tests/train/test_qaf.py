"""QAF: the grid projection, the rank formula, ADMM (error decreasing, factors exactly on their grids),
the factorised conv, BatchNorm re-estimation, the method and the QDQ export of the factors."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from train import methods
from train.methods import MethodContext
from train.methods.qaf import QafConfig, reestimate_batchnorm
from train.models import build_model
from train.quant.cp import CPConv2d, admm_cp, code_range, cp_rank, grid_squared_errors, project, reconstruct
from train.quant.specs import layer_specs


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_projection_is_on_the_grid_and_picks_the_best_threshold(bits):
    v = torch.randn(40, 7, dtype=torch.float64) ** 3  # heavy tails: clipping pays
    grid = project(v, bits)
    low, high = code_range(bits)
    assert torch.equal(grid.codes, grid.codes.round()) and low <= grid.codes.min() and grid.codes.max() <= high
    top = v.abs().max()
    best = min(((v - s * (v / s).round().clamp(low, high)) ** 2).mean().item()
               for t in torch.linspace(0.2, 1.2, 200, dtype=torch.float64) * top
               for s in [t / 127 if bits == 8 else 2 * t / (2**bits - 1)])
    assert ((v - grid.value) ** 2).mean().item() == pytest.approx(best, rel=1e-4)
    assert code_range(8) == (-127, 127) and code_range(4) == (-8, 7)


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_the_threshold_search_sums_the_same_errors_as_rounding_every_value(bits):
    v = torch.randn(300, 11, dtype=torch.float64) * torch.rand(300, 1, dtype=torch.float64)
    low, high = code_range(bits)
    steps = torch.linspace(0.001, 0.9, 37, dtype=torch.float64)
    direct = torch.stack([((v - s * (v / s).round().clamp(low, high)) ** 2).sum() for s in steps])
    assert torch.allclose(grid_squared_errors(v, steps, bits), direct, rtol=1e-9, atol=1e-9)


def test_rank_formula_matches_the_papers_resnet18_ranks():
    assert [cp_rank(c, c, 9, 2.0) for c in (64, 128, 256, 512)] == [134, 278, 566, 1141]
    assert [cp_rank(2 * c, c, 9, 2.0) for c in (64, 128, 256)] == [183, 375, 759]


@pytest.mark.parametrize("bits", [4, 8])
def test_admm_lowers_the_error_and_leaves_every_factor_on_its_grid(bits):
    g = torch.Generator().manual_seed(0)
    true = [torch.randn(n, 6, generator=g) for n in (12, 10, 9)]
    x = reconstruct(true) + 0.05 * torch.randn(12, 10, 9, generator=g)
    result = admm_cp(x, 6, bits, outer=15, inner=20, init_iterations=3, seed=1)
    assert result.errors[-1] < result.errors[0]
    assert min(result.errors) == pytest.approx(result.errors[-1], abs=2e-3)
    low, high = code_range(bits)
    for grid, n in zip(result.factors, (12, 10, 9), strict=True):
        assert grid.codes.shape == (n, 6) and grid.scale > 0
        assert torch.equal(grid.codes, grid.codes.round()) and low <= grid.codes.min() and grid.codes.max() <= high
    rel = ((x - reconstruct([f.value for f in result.factors])).norm() / x.norm()).item()
    assert rel == pytest.approx(result.errors[-1], rel=1e-4)


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 0)])
def test_factorised_conv_computes_the_conv_of_the_reconstructed_weight(stride, padding):
    conv = torch.nn.Conv2d(5, 7, 3, stride=stride, padding=padding, bias=True)
    layer = CPConv2d(conv, rank=4, bits=8)
    g = torch.Generator().manual_seed(0)
    factors = [project(torch.randn(n, 4, generator=g), 8) for n in (7, 5, 9)]
    layer.set_factors(factors, conv.bias.detach())
    weight = reconstruct([f.value for f in factors]).reshape(7, 5, 3, 3)
    x = torch.randn(2, 5, 9, 9)
    expected = F.conv2d(x, weight, conv.bias, stride=stride, padding=padding)
    for mode in (True, False):
        assert torch.allclose(layer.train(mode)(x), expected, atol=1e-4)
    assert [c.weight_quantizer.scale.item() for c in layer.factor_convs] == pytest.approx(
        [factors[1].scale, factors[2].scale, factors[0].scale])


def test_batchnorm_reestimation_averages_the_batches():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    batches = [(torch.randn(4, 2, 5, 5) * s + s, None) for s in (1.0, 2.0, 3.0)]
    assert reestimate_batchnorm(model.eval(), batches) == 3 and not model.training
    with torch.no_grad():
        means = torch.stack([model[0](x).mean(dim=(0, 2, 3)) for x, _ in batches])
    assert torch.allclose(model[1].running_mean, means.mean(0), atol=1e-5)
    assert model[1].momentum == 0.1


def _context(data):
    return MethodContext(device=torch.device("cpu"), steps_per_epoch=5, total_steps=10,
                         calibration_batches=lambda n: iter(data[:n]), log=lambda _line: None)


def test_method_factorises_every_kxk_conv_reestimates_bn_and_exports_grid_factors():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    original = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in ("conv1", "conv2")}
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 1, 12, 12, generator=g), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    method = methods.get("qaf")(QafConfig(bits=6, outer=5, inner=5, init_iterations=5, bn_batches=2))
    model = method.prepare(model, _context(data))
    assert list(method.layers) == ["conv1", "conv2"]  # 3x3 convs; the 1x1 conv3, stem and classifier stay
    before = model.bn1.running_mean.clone()
    method.on_step_start(0, model, _context(data))
    assert method.in_final_form() and not torch.equal(model.bn1.running_mean, before)
    for name, layer in method.layers.items():
        assert layer.rank == cp_rank(16, 16, 9, 2.0)
        errors = method.errors[name]
        a = layer.pw_out.weight.detach()[:, :, 0, 0]
        b = layer.pw_in.weight.detach()[:, :, 0, 0].T
        c = layer.dw.weight.detach().reshape(layer.rank, -1).T
        w = original[name]
        rel = ((w.reshape(16, 16, 9) - reconstruct([a, b, c])).norm() / w.norm()).item()
        assert rel == pytest.approx(errors[-1], rel=1e-3)
        for conv in layer.factor_convs:
            codes = conv.weight.detach() / conv.weight_quantizer.scale
            assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 32
    state = method.state_dict()
    assert state["factorized"] and set(state["errors"]) == {"conv1", "conv2"}
    specs = {s.name: str(s.precision) for s in layer_specs(model)}
    assert specs["conv1.pw_in"] == specs["conv1.dw"] == specs["conv2.pw_out"] == "w6a32"
    assert specs["conv3"] == specs["stem"] == "float"

    buffer = io.BytesIO()
    torch.onnx.export(model.eval(), (data[0][0][:1],), buffer, dynamo=False, opset_version=17)
    proto = onnx.load_from_string(buffer.getvalue())
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node if n.op_type == "Constant"}
    weight_q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in consts]
    assert len(weight_q) == 6  # three factor convs per factorised conv
    for node in weight_q:
        codes = consts[node.input[0]] / consts[node.input[1]]
        assert np.allclose(codes, np.round(codes), atol=1e-4) and np.abs(codes).max() <= 32
    assert sum(n.op_type == "Conv" for n in proto.graph.node) == 8
