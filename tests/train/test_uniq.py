"""UniQ: quantizer grids, the paper's gradients, the step initialisation, the exact {0, Delta} -> +/-1
deploy form (ties included), the QDQ export of the multi-bit form, and the method."""

from __future__ import annotations

import io
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from train import methods
from train.methods import MethodContext
from train.methods.uniq import UniqConfig
from train.models import build_model
from train.quant.specs import layer_specs
from train.quant.uniq import ACTIVATION_STEP_GAIN, WEIGHT_STEP_GAIN, UniqActivation, UniqConv2d, UniqWeight


def _layer(bits: int, stride: int = 1, kernel: int = 3, delta_a: float = 0.75, seed: int = 0) -> UniqConv2d:
    torch.manual_seed(seed)
    layer = UniqConv2d(8, 16, kernel, stride=stride, padding=kernel // 2, bias=False,
                       input_quantizer=UniqActivation(bits), weight_quantizer=UniqWeight(bits))
    layer.set_quantized(input=True, weight=True)
    layer.weight_quantizer.init_step(layer.weight)
    with torch.no_grad():
        layer.input_quantizer.delta.fill_(delta_a)
    return layer


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 7])
def test_weights_are_odd_multiples_of_half_the_step(bits):
    q = UniqWeight(bits)
    with torch.no_grad():
        q.delta.fill_(0.25)  # a power of two: the grid arithmetic is exact in float32
    w = torch.randn(4000) * 2
    w[:5] = torch.tensor([0.0, 1e-9, -1e-9, 100.0, -100.0])
    for mode in (True, False):
        q.train(mode)
        codes = q(w).detach() / 0.125
        assert torch.equal(codes, codes.round()) and torch.all(codes.remainder(2) == 1)
        assert codes.abs().max() == 2**bits - 1  # the clip is reached at |w| >= n Delta / 2
    if bits == 1:
        assert q(w).unique().tolist() == [-0.125, 0.125]
        assert q(torch.zeros(1)).item() == -0.125  # round(0.5) = 0: w = 0 -> -Delta/2


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_activations_lie_on_zero_to_n_steps_in_training_and_eval(bits):
    q = UniqActivation(bits)
    with torch.no_grad():
        q.delta.fill_(0.25)
    x = torch.randn(10000) * 2
    x[:2] = torch.tensor([-100.0, 100.0])
    train_out = q.train()(x).detach()
    levels = train_out / 0.25
    assert torch.equal(levels, levels.round()) and levels.min() == 0 and levels.max() == 2**bits - 1
    # Eval is the QDQ form (x * (1/Delta) instead of x / Delta): equal away from rounding ties.
    assert torch.equal(q.eval()(x), train_out)


def test_step_gradients_are_the_papers():
    """dw_hat/dDelta and dx_hat/dDelta (METHODS.md §2.2) times LSQ's scale g, and the clip masks."""
    bits, delta = 2, 0.4
    n = 2**bits - 1
    w = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64).requires_grad_()
    q = UniqWeight(bits).double()
    with torch.no_grad():
        q.delta.fill_(delta)
    q(w).sum().backward()
    v = w.detach() / delta
    inside = v.abs() <= n / 2
    expected = torch.where(inside, (v + n / 2).round() - (v + n / 2), torch.sign(v) * n / 2)
    g = 1 / math.sqrt(w.numel() * max(2 ** (bits - 1) - 1, 1))
    assert q.delta.grad.item() == pytest.approx(g * expected.sum().item(), rel=1e-9)
    assert torch.equal(w.grad, inside.double())

    x = torch.linspace(-1.0, 2.0, 301, dtype=torch.float64).requires_grad_()
    a = UniqActivation(bits).double()
    with torch.no_grad():
        a.delta.fill_(delta)
    a(x).sum().backward()
    u = x.detach() / delta
    inside = (u >= 0) & (u <= n)
    expected = torch.where(u < 0, 0.0, torch.where(inside, u.round() - u, float(n)))
    g = 1 / math.sqrt(x.numel() * n)
    assert a.delta.grad.item() == pytest.approx(g * expected.sum().item(), rel=1e-9)
    assert torch.equal(x.grad, inside.double())


def test_step_initialisation_from_statistics():
    w = torch.randn(64, 32, 3, 3)
    q = UniqWeight(4)
    q.init_step(w)
    assert q.delta.item() == pytest.approx(w.std().item() * WEIGHT_STEP_GAIN[4], rel=1e-6)
    a = UniqActivation(2)
    a.reset()
    batches = [torch.randn(8, 4, 5, 5) * s for s in (1.0, 3.0, 2.0)]
    for x in batches:
        a.observe(x)
    best = max(math.sqrt(2 * x.double().pow(2).mean().item()) for x in batches) * ACTIVATION_STEP_GAIN[2]
    assert a.delta.item() == pytest.approx(best, rel=1e-6)


def _tie_inputs(delta_a: float, stride: int) -> torch.Tensor:
    """Random inputs with exact ties x = Delta_a / 2, their float neighbours, 0 and the clip edge."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 7, 7, generator=g) * delta_a
    half = torch.tensor(delta_a / 2)
    specials = torch.stack([half, torch.nextafter(half, torch.tensor(1.0)), torch.nextafter(half, torch.tensor(0.0)),
                            torch.tensor(0.0), torch.tensor(delta_a)])
    x.view(-1)[: 5 * 40] = specials.repeat(40)
    x[1] = half  # a whole image of ties
    return x


@pytest.mark.parametrize(("stride", "kernel", "delta_a"), [(1, 3, 0.75), (2, 3, 0.3), (1, 1, 1.0), (2, 3, 0.5)])
def test_binary_deploy_form_equals_the_zero_delta_fake_quant_ties_included(stride, kernel, delta_a):
    layer = _layer(1, stride=stride, kernel=kernel, delta_a=delta_a)
    x = _tie_inputs(delta_a, stride)
    with torch.no_grad():
        a = layer.input_quantizer.train()(x) / delta_a  # UniQ's {0, 1} activations
        reference = layer.train()(x)  # conv(Delta_a * a, w_hat), zero padding
        layer.eval()
        b = layer.binary_input(x)
        deployed = layer(x)
    pads = kernel // 2
    inner = b[:, :, pads:b.shape[2] - pads, pads:b.shape[3] - pads] if pads else b
    assert torch.equal(a, (1 - inner) / 2)  # every activation, ties included
    if pads:
        assert torch.all(b[:, :, :pads] == 1) and torch.all(b[:, :, :, :pads] == 1)  # +1 padding = a = 0
    scale = layer.eval_weight.abs()
    assert torch.all(scale == scale.flatten()[0])  # one +/- scale: an LCE binary filter
    assert torch.allclose(deployed, reference, rtol=0, atol=1e-5 * reference.abs().max().item())

    buffer = io.BytesIO()
    torch.onnx.export(layer, (x[:1],), buffer, dynamo=False, opset_version=17, input_names=["x"])
    proto = onnx.load_from_string(buffer.getvalue())
    ops = [node.op_type for node in proto.graph.node]
    assert {"Sub", "GreaterOrEqual", "Where", "Conv"} <= set(ops) and "QuantizeLinear" not in ops
    session = ort.InferenceSession(proto.SerializeToString())
    got = np.concatenate([session.run(None, {"x": x[i:i + 1].numpy()})[0] for i in range(len(x))])
    assert np.allclose(got, reference.numpy(), rtol=0, atol=1e-5 * reference.abs().max().item())


@pytest.mark.parametrize("bits", [2, 4])
def test_multibit_export_is_qdq_with_the_grids_scales(bits):
    layer = _layer(bits).eval()
    x = torch.randn(1, 8, 6, 6)
    buffer = io.BytesIO()
    torch.onnx.export(layer, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                      do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node if n.op_type == "Constant"}
    quantizes = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizes) == 2
    scales = sorted(float(consts[n.input[1]]) for n in quantizes)
    expected = sorted([layer.input_quantizer.delta.item(), layer.weight_quantizer.delta.item() / 2])
    assert scales == pytest.approx(expected, rel=1e-7)
    weight_q = next(n for n in quantizes if n.input[0] in consts)
    codes = np.round(consts[weight_q.input[0]] / float(consts[weight_q.input[1]]))
    assert set(np.unique(codes)) <= set(range(-(2**bits - 1), 2**bits, 2))
    session = ort.InferenceSession(proto.SerializeToString())
    assert np.allclose(session.run(None, {"x": x.numpy()})[0], layer(x).detach().numpy(), atol=1e-5)


def _context(data):
    return MethodContext(device=torch.device("cpu"), steps_per_epoch=5, total_steps=10,
                         calibration_batches=lambda n: iter(data[:n]), log=lambda _line: None)


@pytest.mark.parametrize("bits", [1, 2])
def test_method_initialises_steps_from_the_float_model_then_quantizes(bits):
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 1, 12, 12, generator=g), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    method = methods.get("uniq")(UniqConfig(bits=bits, calibration_batches=2))
    model = method.prepare(model, _context(data))
    assert list(method.layers) == ["conv1", "conv2", "conv3"] and not method.in_final_form()
    squares: dict[str, float] = {}
    handles = [layer.register_forward_pre_hook(
        lambda _m, args, name=name: squares.__setitem__(name, max(squares.get(name, 0.0), args[0].pow(2).mean().item())))
        for name, layer in method.layers.items()]
    model.eval()
    with torch.no_grad():
        for x, _ in data[:2]:
            model(x)
    for handle in handles:
        handle.remove()
    method.on_step_start(0, model, _context(data))
    assert method.in_final_form() and method.state_dict() == {"initialized": True}
    for name, layer in method.layers.items():
        assert layer.weight_quantizer.delta.item() == pytest.approx(layer.weight.std().item() * WEIGHT_STEP_GAIN[bits],
                                                                    rel=1e-5)
        expected = math.sqrt(2 * squares[name]) * ACTIVATION_STEP_GAIN[bits]
        assert layer.input_quantizer.delta.item() == pytest.approx(expected, rel=1e-4)
    assert [str(s.precision) for s in layer_specs(model)] == ["float", *[f"w{bits}a{bits}"] * 3, "float"]
    with pytest.raises(ValueError, match="bits"):
        UniqConfig(bits=8)

