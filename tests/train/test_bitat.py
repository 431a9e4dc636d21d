"""BiTAT: correlation/eigenbasis/importance numerics, the regulariser identity, sign choice, the
trained rotation, the bottom-to-top schedule, ablation switches, and exact resume mid-stage
(method state and engine)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from train.config import load_config
from train.engine import Trainer, train
from train.methods import MethodContext, get
from train.methods.bitat import BitatConfig
from train.models import build_model
from train.quant import functional as qf
from train.quant.importance import (
    CorrelationMeter,
    binarization_error,
    binary_patches,
    choose_signs,
    eigen_importance,
    regularizer,
)
from train.quant.layers import QuantConv2d
from train.quant.quantizers import from_config
from train.quant.quantizers import get as get_quantizer
from train.quant.rotation import RotatedSign
from train.quant.schedule import StageSchedule, block_key, group_stages

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke_synthetic.yaml"


def _random_correlation(d: int, n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    x = qf.sign(torch.randn(n, d, generator=g) @ mix + 0.3)  # correlated +/-1 patches
    return x, x.T.double() @ x.double() / n


def test_eigenbasis_is_orthonormal_and_importance_non_negative_mean_one():
    _, corr = _random_correlation(24)
    u, lam = eigen_importance(corr)
    assert torch.allclose(u.T @ u, torch.eye(24), atol=1e-5)
    assert (lam >= 0).all() and torch.isclose(lam.mean(), torch.tensor(1.0))
    # Rank-deficient C: eigenvalues may come out slightly negative numerically; they are clamped.
    low_rank = torch.ones(6, 6, dtype=torch.float64)
    _, lam0 = eigen_importance(low_rank, eps=0.0, normalize=False)
    assert (lam0 >= 0).all()


def test_regulariser_equals_the_output_error_identity():
    x, corr = _random_correlation(20, seed=1)
    w = torch.randn(7, 20)
    dw = binarization_error(w)
    output_error = (x.double() @ dw.double().T).square().sum(1).mean()  # E ||dW x||^2
    trace = torch.trace(dw.double() @ corr @ dw.double().T)
    assert torch.isclose(trace, output_error)
    u, lam = eigen_importance(corr, eps=0.0, normalize=False)
    r = regularizer(w, u, lam)
    assert torch.isclose(r.double() * w.numel(), output_error, rtol=1e-4)
    # Normalised importance only rescales by mean(lambda); the identity metric is ||dW||^2.
    u_n, lam_n = eigen_importance(corr, eps=0.0)
    assert torch.isclose(regularizer(w, u_n, lam_n) * lam.mean(), r, rtol=1e-4)
    assert torch.isclose(regularizer(w, None, None) * w.numel(), dw.square().sum())
    # R6 row weights scale each output channel's term.
    gamma = torch.arange(1.0, 8.0)
    per_row = ((dw.double() @ corr) * dw.double()).sum(1)
    assert torch.isclose(
        regularizer(w, u, lam, gamma).double() * w.numel(), (gamma.double() * per_row).sum(), rtol=1e-4
    )


def test_regulariser_gradient_flows_to_the_latent_weight_only():
    w = torch.randn(3, 5, requires_grad=True)
    regularizer(w, None, None).backward()
    dw = binarization_error(w.detach())
    assert torch.allclose(w.grad, 2 * dw / w.numel())


def test_binary_patches_are_the_one_padded_im2col_of_the_binarized_input():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    layer = QuantConv2d.from_conv(
        conv,
        input_quantizer=get_quantizer("approx_sign")(channels=3),
        weight_quantizer=get_quantizer("magnitude_aware_sign")(),
    )
    with torch.no_grad():
        layer.input_quantizer.threshold.copy_(torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
    x = torch.randn(2, 3, 5, 5)
    patches = binary_patches(layer, x, max_patches=10_000)
    xb = F.pad(qf.sign(x - layer.input_quantizer.threshold), (1, 1, 1, 1), value=1.0)
    expected = F.unfold(xb, 3).transpose(1, 2).reshape(-1, 27)
    assert torch.equal(patches, expected)
    # Patch d of position p times the flattened weight is the eval conv's output.
    out = layer.eval()(x)
    w = layer.eval_weight.flatten(1)
    assert torch.allclose((patches @ w.T).view(2, 25, 4).transpose(1, 2).reshape(2, 4, 5, 5), out, atol=1e-5)
    sub = binary_patches(layer, x, max_patches=7, generator=torch.Generator().manual_seed(0))
    assert sub.shape == (7, 27)
    meter = CorrelationMeter()
    meter.update(patches)
    assert torch.allclose(meter.mean().diagonal(), torch.ones(27, dtype=torch.float64))


def test_sign_choice_lowers_the_importance_weighted_error():
    _, corr = _random_correlation(32, seed=2)
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    signs = choose_signs(w, corr)
    assert set(signs.unique().tolist()) <= {-1.0, 1.0}
    alpha = w.abs().mean(1, keepdim=True)

    def err(b: torch.Tensor) -> torch.Tensor:
        d = (w - alpha * b).double()
        return torch.trace(d @ corr @ d.T)

    assert err(signs) < 0.9 * err(qf.sign(w))


def test_stages_group_layers_bottom_to_top():
    names = [
        "blocks.0.conv3x3",
        "blocks.0.pointwise.0",
        "blocks.0.pointwise.1",
        "blocks.1.conv3x3",
        "head.conv",
    ]
    assert block_key("layer1.0.conv1") == "layer1.0" and block_key("head.conv") == "head"
    assert group_stages(["conv1", "conv2"], "block") == [["conv1"], ["conv2"]]
    assert group_stages(names, "layer") == [[n] for n in names]
    assert group_stages(names, "block") == [names[:3], names[3:4], names[4:]]
    with pytest.raises(ValueError, match="method.granularity"):
        group_stages(names, "channel")
    s = StageSchedule.build(group_stages(names, "block"), total_steps=40, progression=0.375)
    assert s.stage_steps == 5 and s.finetune_start == 15
    assert [s.stages_started(k) for k in (0, 4, 5, 9, 10, 39)] == [1, 1, 2, 2, 3, 3]
    def binary_layers(step: int) -> list[str]:
        return [name for stage in s.stages[: s.stages_started(step)] for name in stage]

    assert (
        binary_layers(4) == names[:3] and binary_layers(5) == names[:4] and binary_layers(10) == names
    )
    with pytest.raises(ValueError, match="5 stages x 1 steps but the run has 4"):
        StageSchedule.build([[n] for n in names], total_steps=4, progression=0.9)
    with pytest.raises(ValueError, match=r"method.progression must be in \(0, 1\)"):
        StageSchedule.build([names], total_steps=40, progression=1.0)


def test_rotation_is_orthonormal_starts_at_identity_and_deploys_plus_minus_alpha():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(4))
    q = RotatedSign(4)
    assert torch.equal(q.rotation(), torch.eye(4))
    assert torch.allclose(q(w), get_quantizer("magnitude_aware_sign")()(w), rtol=1e-6, atol=0)
    with torch.no_grad():
        q.rotation_generator.copy_(torch.randn(4, 4, generator=torch.Generator().manual_seed(5)))
    r = q.rotation()
    assert torch.allclose(r.T @ r, torch.eye(4), atol=1e-5) and not torch.allclose(r, torch.eye(4))
    v = q.rotate(w)
    assert torch.allclose(v[2, :, 1, 0], r.T @ w[2, :, 1, 0], atol=1e-6)
    deployed = q.eval()(w).flatten(1)
    alpha = deployed.abs().amax(1, keepdim=True)
    assert torch.equal(deployed, alpha * qf.sign(v.flatten(1)))  # plain +/-alpha per output channel
    assert torch.allclose(alpha, v.flatten(1).abs().mean(1, keepdim=True))
    assert from_config(q.to_config()).rotation_generator.shape == (4, 4)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        RotatedSign(0)


def test_rotation_is_the_cayley_map_equal_to_the_exponential_up_to_third_order():
    a = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    errors = []
    for scale in (1e-2, 5e-3):
        q = RotatedSign(5).double()
        with torch.no_grad():
            q.rotation_generator.copy_(scale * a)
        s = scale * (a - a.T)
        errors.append(float((q.rotation() - torch.linalg.matrix_exp(s)).abs().max()))
        assert torch.allclose(q.rotation() @ q.rotation().T, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert 7.0 < errors[0] / errors[1] < 9.0  # halving S divides the difference by 2^3


def test_rotation_scale_multiplies_the_generator_and_round_trips():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(7))
    scaled, plain = RotatedSign(4, scale=3.0), RotatedSign(4)
    with torch.no_grad():
        scaled.rotation_generator.copy_(a)
        plain.rotation_generator.copy_(3.0 * a)
    assert torch.allclose(scaled.rotation(), plain.rotation(), atol=1e-6)
    assert from_config(scaled.to_config()).scale == 3.0
    with pytest.raises(ValueError, match="scale must be > 0"):
        RotatedSign(4, scale=0.0)


def test_rotation_trains_with_the_task_and_the_importance_term_trains_only_the_rotation():
    model, method, ctx, optimizer, data = _setup(beta_ratio=0.1)
    layer = method.layers["conv2"]
    assert all(isinstance(m.weight_quantizer, RotatedSign) for m in method.layers.values())
    _train(model, method, ctx, optimizer, data, range(5))  # conv2's stage starts at step 4
    optimizer.zero_grad()
    method.extra_loss(model).backward()
    assert layer.weight.grad is None and layer.weight_quantizer.rotation_generator.grad.abs().sum() > 0
    assert method.layers["conv1"].weight_quantizer.rotation_generator.abs().sum() > 0  # trained by the task since step 0
    model.eval()
    flat = layer.eval_weight.flatten(1)  # what the exporter writes
    assert layer.is_binary and torch.equal(flat.abs(), flat.abs().amax(1, keepdim=True).expand_as(flat))
    assert torch.equal(flat.sign(), qf.sign(layer.weight_quantizer.rotate(layer.weight).flatten(1)))


def test_activations_first_binarizes_every_input_at_step_zero_and_weights_by_stage():
    model, method, ctx, *_ = _setup(activations_first=True)
    method.on_step_start(0, model, ctx)
    assert [(m.quantize_input, m.quantize_weight) for m in method.layers.values()] == [
        (True, True), (True, False), (True, False)
    ]
    assert not method.in_final_form()
    method.on_step_start(8, model, ctx)
    assert all(m.is_binary for m in method.layers.values()) and method.in_final_form()


def _batches(n: int = 6, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 1, 12, 12, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)
    ]


def _setup(seed: int = 0, **options):
    torch.manual_seed(seed)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    data = _batches()
    ctx = MethodContext(
        device=torch.device("cpu"),
        steps_per_epoch=4,
        total_steps=24,
        calibration_batches=lambda n: iter(data[:n]),
        log=lambda _line: None,
    )
    config = BitatConfig(
        **{
            "granularity": "layer",
            "progression": 0.5,
            "calibration_batches": 2,
            **options,
        }
    )
    method = get("bitat")(config)
    model = method.prepare(model, ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, method, ctx, optimizer, data


def _train(model, method, ctx, optimizer, data, steps: range, trace: list | None = None) -> None:
    for step in steps:
        method.on_step_start(step, model, ctx)
        if trace is not None:
            trace.append([n for n, m in method.layers.items() if m.is_binary])
        x, y = data[step % len(data)]
        loss = F.cross_entropy(model(x), y)
        extra = method.extra_loss(model)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_bitat_binarizes_bottom_to_top_at_the_stage_steps():
    model, method, ctx, optimizer, data = _setup()
    assert list(method.layers) == ["conv1", "conv2", "conv3"]
    assert not any(m.quantize_input or m.quantize_weight for m in method.layers.values())
    trace: list[list[str]] = []
    _train(model, method, ctx, optimizer, data, range(16), trace)
    assert trace[0] == trace[3] == ["conv1"]
    assert trace[4] == trace[7] == ["conv1", "conv2"]
    assert trace[8] == trace[15] == ["conv1", "conv2", "conv3"]
    metrics = method.step_metrics()
    assert metrics["stage"] == 3 and metrics["binary_layers"] == 3 and method.in_final_form()
    assert set(method.stats) == {"conv3"} and set(method.stats["conv3"]) == {"corr", "basis", "importance"}


def test_beta_starts_at_the_ratio_and_anneals_to_zero_within_the_stage():
    model, method, ctx, optimizer, data = _setup(beta_ratio=0.1)
    betas = []
    for step in range(5):
        method.on_step_start(step, model, ctx)
        betas.append(method.beta)
        if step == 0:
            reg = float(method.extra_loss(model).detach())
            with torch.no_grad():
                ce = sum(float(F.cross_entropy(model.train()(x), y)) for x, y in data[:2]) / 2
            assert reg == pytest.approx(0.1 * ce, rel=0.05)  # beta * R ~= 0.1 CE at stage start
    assert betas[0] > betas[1] > betas[2] > betas[3] > 0 and betas[4] == pytest.approx(method.beta0)


def test_soft_stages_blend_each_stage_from_float_to_binary_over_its_steps():
    model, method, ctx, *_ = _setup(soft_stages=True)
    blends = []
    for step in (0, 2, 4, 6, 8, 12):
        method.on_step_start(step, model, ctx)
        blends.append([m.blend for m in method.layers.values()])
    assert blends == [[0.0, 1.0, 1.0], [0.5, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.5, 1.0], [1.0, 1.0, 0.0],
                      [1.0, 1.0, 1.0]]  # 4 steps per stage; a stage not yet started keeps the default
    with pytest.raises(ValueError, match="activations_first"):
        BitatConfig(soft_stages=True, activations_first=True)


def test_blended_layer_trains_between_its_float_and_binary_forms_and_evaluates_binary():
    torch.manual_seed(0)
    layer = QuantConv2d(4, 6, 3, padding=1, input_quantizer=get_quantizer("approx_sign")(4),
                        weight_quantizer=get_quantizer("magnitude_aware_sign")())
    x = torch.randn(2, 4, 5, 5)
    float_out = F.conv2d(x, layer.weight, layer.bias, padding=1)
    binary_out = layer(x)
    layer.blend = 0.0
    torch.testing.assert_close(layer(x), float_out)
    layer.blend = 0.25
    torch.testing.assert_close(layer(x), F.conv2d(
        0.25 * layer.binarized_input(x) + 0.75 * F.pad(x, (1, 1, 1, 1)),
        0.25 * layer.weight_quantizer(layer.weight) + 0.75 * layer.weight, layer.bias))
    assert not torch.allclose(layer(x), binary_out)
    layer.eval()
    torch.testing.assert_close(layer(x), binary_out)  # eval (the deploy form) ignores the blend


def test_ablation_switches():
    model, method, ctx, *_ = _setup(progressive=False, importance=False)
    method.on_step_start(0, model, ctx)
    assert all(m.is_binary for m in method.layers.values()) and method.stats == {}
    assert method.schedule.stage_steps == 12 and method.extra_loss(model) is not None
    model, method, ctx, *_ = _setup(sign_choice=True)
    before = model.conv1.weight.detach().clone()
    method.on_step_start(0, model, ctx)
    after = model.conv1.weight.detach()
    assert torch.equal(after.abs(), before.abs()) and not torch.equal(after, before)
    model, method, ctx, optimizer, data = _setup(gradient_weighting=True, rotation=False)
    method.on_step_start(0, model, ctx)
    gamma = method.stats["conv1"]["row_weight"]
    assert gamma.shape == (model.conv1.out_channels,) and (gamma > 0).all()
    assert torch.isclose(gamma.mean(), torch.tensor(1.0))
    assert all(p.grad is None for p in model.parameters())  # the measurement leaves no gradient behind
    entry = method.stats["conv1"]
    expected = regularizer(model.conv1.weight, entry["basis"], entry["importance"], gamma)
    assert torch.isclose(method.extra_loss(model), method.beta * expected)
    with pytest.raises(ValueError, match="method.granularity"):
        BitatConfig(granularity="channel")
    with pytest.raises(ValueError, match="method.progression"):
        BitatConfig(progression=0.0)


def test_method_state_round_trip_resumes_mid_stage_exactly():
    model, method, ctx, optimizer, data = _setup(sign_choice=True)
    _train(model, method, ctx, optimizer, data, range(18))
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, method, ctx, optimizer, data = _setup(sign_choice=True)
    _train(model, method, ctx, optimizer, data, range(6))  # killed in the middle of stage 2
    buf = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "optim": optimizer.state_dict(), "method": method.state_dict()}, buf
    )
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model, method, ctx, optimizer, data = _setup(seed=1, sign_choice=True)  # fresh process, other init
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optim"])
    method.load_state_dict(saved["method"])
    assert method.started == 2 and [m.is_binary for m in method.layers.values()] == [True, True, False]
    _train(model, method, ctx, optimizer, data, range(6, 18))
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.slow
def test_engine_run_killed_mid_stage_resumes_to_the_same_weights(tmp_path, monkeypatch):
    overrides = [
        "optim.epochs=4",
        "method.name=bitat",
        "method.granularity=layer",
        "method.progression=0.375",
        "method.calibration_batches=2",
        "run.checkpoint_every_steps=5",
    ]
    cfg = load_config(SMOKE, overrides)
    train(cfg, tmp_path / "whole", resume=False)

    original = Trainer._step

    def crash_at_step_6(self, x, y, indices):  # stage 2 spans steps 4..7; last.pt holds step 5
        if self.global_step == 6:
            raise KeyboardInterrupt("killed")
        original(self, x, y, indices)

    monkeypatch.setattr(Trainer, "_step", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed", resume=False)
    monkeypatch.setattr(Trainer, "_step", original)
    mid = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert mid["global_step"] == 5 and mid["method"]["started"] == 2 and mid["method"]["stats"]
    train(cfg, tmp_path / "killed", resume=True)
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
