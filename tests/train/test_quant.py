"""The binarization library: sign, STEs, scales, quantizer registry, QuantConv2d, its eval (exported) form, ONNX form."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from train.models import build_model
from train.quant import functional as qf
from train.quant import quantizers as qz
from train.quant.layers import QuantConv2d, explicit_pads
from train.quant.specs import layer_specs
from train.quant.summary import model_summary, summary_dict
from train.quant.surgery import eligible_layers, quantize_eligible

X = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


def test_sign_maps_zero_to_plus_one_and_keeps_dtype():
    out = qf.sign(X)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert qf.sign(torch.zeros(3, dtype=torch.float64)).dtype == torch.float64
    assert qf.sign(torch.tensor([-0.0])).item() == 1.0


def test_ste_sign_gradient_is_clipped_identity():
    x = X.clone().requires_grad_()
    qf.ste_sign(x).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]
    x = X.clone().requires_grad_()
    qf.ste_sign(x, clip=0.5).sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_approx_sign_gradient_values():
    x = X.clone().requires_grad_()
    y = qf.approx_sign(x)
    assert y.tolist() == qf.sign(X).tolist()
    y.backward(torch.full_like(X, 3.0))
    assert x.grad.tolist() == [0, 0, 3, 6, 3, 0, 0]  # 3 * max(0, 2 - 2|x|)


def test_channel_scale_is_mean_abs_per_output_channel():
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    alpha = qf.channel_scale(w)
    assert alpha.shape == (5, 1, 1, 1)
    assert torch.allclose(alpha.flatten(), w.detach().abs().flatten(1).mean(1))
    assert not alpha.requires_grad


def test_magnitude_aware_sign_values_and_gradient():
    torch.manual_seed(0)
    w = (torch.randn(4, 2, 3, 3) * 0.8).requires_grad_()
    q = qz.get("magnitude_aware_sign")()
    out = q(w)
    alpha = w.detach().abs().flatten(1).mean(1)
    assert torch.equal(out.detach().abs().flatten(1), alpha[:, None].expand(4, 18))
    assert torch.equal(torch.sign(out.detach()), qf.sign(w.detach()))
    out.sum().backward()
    expected = alpha.view(4, 1, 1, 1) * (w.detach().abs() <= 1).float()
    assert torch.allclose(w.grad, expected)


def test_threshold_is_subtracted_and_learns():
    q = qz.get("approx_sign")(channels=2)
    with torch.no_grad():
        q.threshold.copy_(torch.tensor([0.5, -0.5]).view(1, 2, 1, 1))
    x = torch.full((1, 2, 1, 1), 0.25)
    assert q(x).flatten().tolist() == [-1.0, 1.0]
    q(x).sum().backward()
    # x - tau = [-0.25, 0.75]; d/dtau = -max(0, 2 - 2|x - tau|)
    assert q.threshold.grad.flatten().tolist() == [-1.5, -0.5]


def test_scaled_approx_sign_follows_the_input_magnitude():
    q = qz.get("scaled_approx_sign")(channels=0)
    x = torch.tensor([-4.0, -1.0, 2.0, 3.0]).view(1, 4, 1, 1).expand(2, 4, 1, 1).clone().requires_grad_()
    out = q(x)
    assert torch.equal(out, qf.sign(x.detach()))
    out.sum().backward()
    # Per channel s = |x|, so x / s = +/-1: at the window's edge the ApproxSign gradient is 0.
    assert torch.equal(x.grad, torch.zeros_like(x))
    x2 = torch.tensor([[0.5], [-1.5]]).view(2, 1, 1, 1).requires_grad_()  # s = 1: x/s = 0.5, -1.5
    q(x2).sum().backward()
    assert x2.grad.flatten().tolist() == [1.0, 0.0]
    x3 = (x2.detach() * 4).requires_grad_()  # s = 4: same window, gradient / 4
    q(x3).sum().backward()
    assert x3.grad.flatten().tolist() == [0.25, 0.0]
    assert torch.equal(q.eval()(x3), qf.sign(x3.detach()))


def test_quantizer_registry_errors_and_round_trip():
    with pytest.raises(ValueError, match="unknown quantizer 'nope'; available: .*approx_sign"):
        qz.get("nope")
    with pytest.raises(ValueError, match="already registered"):

        @qz.register
        class Again(qz.Quantizer):
            name = "ste_sign"

    with pytest.raises(ValueError, match="has no name"):

        @qz.register
        class Nameless(qz.Quantizer):
            pass

    with pytest.raises(ValueError, match="bad options"):
        qz.from_config({"name": "ste_sign", "colour": 3})
    with pytest.raises(ValueError, match="'name' key"):
        qz.from_config({"channels": 3})
    for config in (
        {"name": "ste_sign", "channels": 4, "clip": 1.5},
        {"name": "approx_sign", "channels": 0},
                   {"name": "scaled_approx_sign", "channels": 2},
        {"name": "magnitude_aware_sign", "clip": 1.0},
    ):
        q = qz.from_config(config)
        assert q.to_config() == config
        assert type(qz.Quantizer.from_config(q.to_config())) is type(q)
    assert {"ste_sign", "approx_sign", "magnitude_aware_sign"} <= set(qz.available())


def _conv(**kw) -> nn.Conv2d:
    torch.manual_seed(1)
    return nn.Conv2d(4, 6, 3, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        dict(padding=1),
        dict(stride=2, padding=1, bias=False),
        dict(padding="same"),
        dict(padding=2, dilation=2),
    ],
)
def test_quantconv_without_quantizers_is_the_float_conv_bit_for_bit(kw):
    conv = _conv(**kw)
    x = torch.randn(2, 4, 9, 9)
    fresh = QuantConv2d(4, 6, 3, **kw)
    fresh.load_state_dict(conv.state_dict(), strict=False)
    assert torch.equal(fresh(x), conv(x))
    shared = QuantConv2d.from_conv(
        conv, input_quantizer=qz.get("ste_sign")(), weight_quantizer=qz.get("ste_sign")()
    )
    shared.set_quantized(input=False, weight=False)
    assert torch.equal(shared(x), conv(x))
    shared.set_quantized(input=True, weight=True)
    assert not torch.equal(shared(x), conv(x))


def test_one_padding_pads_the_binarized_input_with_plus_one():
    conv = _conv(padding=1, bias=False)
    layer = QuantConv2d.from_conv(conv, input_quantizer=qz.get("ste_sign")(), weight_quantizer=None)
    x = torch.randn(2, 4, 7, 7)
    expected = F.conv2d(F.pad(qf.sign(x), (1, 1, 1, 1), value=1.0), conv.weight)
    assert torch.allclose(layer(x), expected)
    zero_padded = F.conv2d(qf.sign(x), conv.weight, padding=1)
    assert not torch.allclose(layer(x), zero_padded)  # the border really differs


def test_eval_forward_is_the_exported_form_with_plus_minus_scale_weights():
    conv = _conv(padding=1)
    layer = QuantConv2d.from_conv(
        conv,
        input_quantizer=qz.get("approx_sign")(channels=4),
        weight_quantizer=qz.get("magnitude_aware_sign")(),
    )
    layer.set_quantized(input=True, weight=True)
    with torch.no_grad():
        layer.input_quantizer.threshold.uniform_(-0.2, 0.2)
    layer.eval()
    assert layer.is_binary and layer.pad_value == 1.0 and explicit_pads(layer) == (1, 1, 1, 1)
    w = layer.eval_weight.flatten(1)
    scale = conv.weight.detach().abs().flatten(1).mean(1)
    assert torch.equal(w.abs(), scale[:, None].expand_as(w))
    assert torch.equal(torch.sign(w), qf.sign(conv.weight.detach().flatten(1)))
    # The eval forward computes exactly the exported form: sign(x - tau) -> pad with +1 -> conv with +/-scale.
    x = torch.randn(2, 4, 8, 8)
    xb = qf.sign(x - layer.input_quantizer.threshold.detach())
    manual = F.conv2d(F.pad(xb, (1, 1, 1, 1), value=1.0), layer.eval_weight, layer.bias, layer.stride)
    assert torch.equal(layer(x), manual)
    assert torch.equal(layer.binarized_input(x), F.pad(xb, (1, 1, 1, 1), value=1.0))


def test_quantization_switches_travel_in_the_state_dict():
    conv = _conv(padding=1)
    a = QuantConv2d.from_conv(
        conv, input_quantizer=qz.get("ste_sign")(), weight_quantizer=qz.get("ste_sign")()
    )
    a.set_quantized(input=True, weight=False)
    b = QuantConv2d.from_conv(
        _conv(padding=1), input_quantizer=qz.get("ste_sign")(), weight_quantizer=qz.get("ste_sign")()
    )
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert (b.quantize_input, b.quantize_weight) == (True, False)
    with pytest.raises(ValueError, match="no weight_quantizer"):
        QuantConv2d.from_conv(conv).set_quantized(weight=True)


def _tiny_binarized() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    layers = quantize_eligible(model, activation="approx_sign", weight="magnitude_aware_sign", threshold=True)
    with torch.no_grad():
        for layer in layers.values():
            layer.set_quantized(input=True, weight=True)
            layer.input_quantizer.threshold.uniform_(-0.1, 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1.5, 1.5)
    return model.eval()


def test_onnx_export_has_the_lce_binary_pattern():
    model = _tiny_binarized()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, 1, 12, 12), buf, opset_version=17, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue()).graph
    ops = [n.op_type for n in graph.node]
    assert {"Sub", "GreaterOrEqual", "Where", "Pad", "Conv"} <= set(ops)
    assert "Sign" not in ops and "Abs" not in ops  # no runtime weight binarization left
    constants = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"
    }
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert len(pads) == 2 and all(float(constants[p.input[2]]) == 1.0 for p in pads)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    binary = 0
    for node in convs:
        w = np.abs(inits[node.input[1]].reshape(inits[node.input[1]].shape[0], -1))
        if np.all(w.max(1) - w.min(1) <= 1e-6 * w.max(1)):
            binary += 1
    assert len(convs) == 4 and binary == 3  # stem float; three binary convs (BN folded: still +/-scale)
    session = ort.InferenceSession(buf.getvalue())
    x = torch.randn(1, 1, 12, 12)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(got, model(x).detach().numpy(), atol=1e-4)


def test_layer_specs_and_summary_say_which_layers_are_binary_and_why():
    model = build_model("mobilenetv2", num_classes=10, in_channels=3, image_size=32, width=0.25)
    names = eligible_layers(model)
    quantize_eligible(
        model, activation="approx_sign", weight="magnitude_aware_sign", threshold=True, names=names[:-1]
    )
    for layer in model.modules():
        if isinstance(layer, QuantConv2d):
            layer.set_quantized(input=True, weight=True)
    specs = {s.name: s for s in layer_specs(model)}
    assert all(specs[n].precision.is_binary and specs[n].reason == "" for n in names[:-1])
    assert specs[names[-1]].precision.is_float and specs[names[-1]].reason == "not selected"
    reasons = {s.reason for s in specs.values() if s.precision.is_float}
    assert {"stem", "classifier", "depthwise", "not selected"} <= reasons
    assert all(s.op == "depthwise_conv" for s in specs.values() if s.reason == "depthwise")
    data = summary_dict(model, (3, 32, 32))
    t = data["totals"]
    assert t["binary_layers"] == len(names) - 1
    assert t["params"] == sum(p.numel() for p in model.parameters())
    assert t["bops"] == sum(r["macs"] for r in data["layers"] if r["precision"] == "w1a1") > 0
    assert t["bytes"] < t["float32_bytes"]
    text = model_summary(model, (3, 32, 32))
    assert "depthwise" in text and "binary layers:" in text and "BOPs" in text
