"""QuantNet (our interpretation): the meta-network, soft binary weights without an STE, the deploy
form +/-alpha per channel, the annealing and the method's loss term."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from train import methods
from train.methods import MethodContext
from train.methods.quantnet import QuantNetConfig
from train.models import build_model
from train.quant.quantnet import MetaQuantizer, QuantNetWeight
from train.quant.specs import layer_specs


def test_meta_network_starts_near_the_identity_deterministically():
    a, b = MetaQuantizer(16), MetaQuantizer(16)
    error = a.fit_identity(3.0)
    b.fit_identity(3.0)
    assert error < 1e-2
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    w = torch.linspace(-2.5, 2.5, 11)
    assert torch.allclose(a(w), w, atol=0.2)


def _quantizer(beta: float = 3.0) -> QuantNetWeight:
    meta = MetaQuantizer(8)
    meta.fit_identity(3.0, steps=100)
    meta.beta.fill_(beta)
    return QuantNetWeight(meta)


def test_training_weights_are_soft_and_eval_weights_are_plus_minus_alpha():
    q = _quantizer()
    w = torch.randn(6, 4, 3, 3)
    soft = q.train()(w)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    z = q.meta(w / (w.std() + 1e-8))
    assert torch.allclose(soft, alpha * torch.tanh(3.0 * z), atol=1e-6)
    assert q.penalty.item() == pytest.approx((1 - torch.tanh(3.0 * z).pow(2)).mean().item(), rel=1e-5)
    hard = q.eval()(w)
    assert torch.equal(hard.abs(), alpha.expand_as(w))
    assert torch.equal(torch.sign(hard), torch.where(z >= 0, 1.0, -1.0))


def test_weights_are_fully_differentiable_no_straight_through():
    """The paper's point: gradients are the true derivative of the soft quantizer (gradcheck fails for an STE)."""
    q = _quantizer(beta=2.0).double().train()
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: q(t), (w,))
    params = tuple(q.meta.parameters())
    assert torch.autograd.gradcheck(lambda *p: torch.func.functional_call(q.meta, dict(zip(
        [n for n, _ in q.meta.named_parameters()], p, strict=True)), (w.detach(),)), params)


def _context(data, total_steps=11):
    return MethodContext(device=torch.device("cpu"), steps_per_epoch=5, total_steps=total_steps,
                         calibration_batches=lambda n: iter(data[:n]), log=lambda _line: None)


def test_method_anneals_beta_ramps_the_penalty_and_exports_binary_convs():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 1, 12, 12, generator=g), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    method = methods.get("quantnet")(QuantNetConfig(hidden=8, penalty=0.5, calibration_batches=2))
    ctx = _context(data)
    model = method.prepare(model, ctx)
    shared = {id(layer.weight_quantizer.meta) for layer in method.layers.values()}
    assert len(shared) == 1  # one meta-network for every layer
    method.on_step_start(0, model, ctx)
    assert method.in_final_form() and float(method.meta.beta) == pytest.approx(1.0)
    model.train()(data[0][0])
    assert method.extra_loss(model) is None  # weight 0 at step 0
    method.on_step_start(5, model, ctx)
    assert float(method.meta.beta) == pytest.approx(100**0.5, rel=1e-5)
    model(data[0][0])
    penalties = sum(layer.weight_quantizer.penalty for layer in method.layers.values())
    assert method.extra_loss(model).item() == pytest.approx(0.5 * 0.5 * penalties.item(), rel=1e-5)
    method.on_step_start(10, model, ctx)
    assert float(method.meta.beta) == pytest.approx(100.0, rel=1e-5)
    assert set(method.step_metrics()) == {"beta", "penalty_weight", "discretization_error"}
    assert [str(s.precision) for s in layer_specs(model)] == ["float", "w1a1", "w1a1", "w1a1", "float"]

    buffer = io.BytesIO()
    torch.onnx.export(model.eval(), (data[0][0][:1],), buffer, dynamo=False, opset_version=17)
    proto = onnx.load_from_string(buffer.getvalue())
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    binary = 0
    for node in (n for n in proto.graph.node if n.op_type == "Conv"):
        w = np.abs(inits[node.input[1]].reshape(inits[node.input[1]].shape[0], -1))
        binary += bool(np.all(w.max(1) - w.min(1) <= 1e-6 * w.max(1)))
    assert binary == 3 and sum(n.op_type == "Where" for n in proto.graph.node) == 3
    assert not any("meta" in name for name in inits)  # the meta-network is not deployed
    with pytest.raises(ValueError, match="beta_end"):
        QuantNetConfig(beta_start=10.0, beta_end=2.0)
