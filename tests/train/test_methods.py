"""The method registry and the ``ste`` baseline (BiTAT has its own tests in test_bitat.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train import methods
from train.assembly import build_from_checkpoint
from train.config import ConfigError, load_config
from train.engine import train
from train.methods import MethodContext
from train.methods.ste import SteConfig
from train.models import build_model
from train.quant.calibrate import observe_inputs
from train.quant.specs import layer_specs

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke_synthetic.yaml"


def test_registry_lists_and_rejects_names():
    assert {"float", "ste", "bitat", "uniq", "quantnet", "qaf"} <= set(methods.available())
    assert methods.get("ste").config_cls is SteConfig
    with pytest.raises(ValueError, match="unknown method 'bitatt'; available: bitat, float, qaf, quantnet, ste, uniq"):
        methods.get("bitatt")
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.get("bitat"))


def _ste(**options):
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=12, width=0.5)
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(8, 1, 12, 12, generator=g) + 0.5, torch.randint(0, 10, (8,), generator=g))
        for _ in range(3)
    ]
    ctx = MethodContext(
        device=torch.device("cpu"),
        steps_per_epoch=5,
        total_steps=10,
        calibration_batches=lambda n: iter(data[:n]),
        log=lambda _line: None,
    )
    method = methods.get("ste")(SteConfig(**options))
    return method.prepare(model, ctx), method, ctx, data


def test_ste_binarizes_every_eligible_layer_at_step_zero_with_calibrated_thresholds():
    model, method, ctx, data = _ste(calibration_batches=3)
    assert list(method.layers) == ["conv1", "conv2", "conv3"] and not method.in_final_form()
    float_means = {}

    def observe(name, x):
        float_means.setdefault(name, []).append(x.double().mean(dim=(0, 2, 3)))

    observe_inputs(model, method.layers, data, observe)
    method.on_step_start(0, model, ctx)
    assert all(m.is_binary for m in method.layers.values()) and method.in_final_form()
    for name, layer in method.layers.items():
        expected = torch.stack(float_means[name]).mean(0).float()
        assert torch.allclose(layer.input_quantizer.threshold.flatten(), expected, atol=1e-5)
    assert method.step_metrics() == {"binary_layers": 3.0}
    assert {s.name: str(s.precision) for s in layer_specs(model)} == {
        "stem": "float",
        "conv1": "w1a1",
        "conv2": "w1a1",
        "conv3": "w1a1",
        "classifier": "float",
    }


def test_ste_two_step_binarizes_activations_first_then_weights():
    model, method, ctx, _ = _ste(two_step=True, two_step_fraction=0.3)
    method.on_step_start(0, model, ctx)
    assert all(m.quantize_input and not m.quantize_weight for m in method.layers.values())
    assert not method.in_final_form()
    method.on_step_start(2, model, ctx)
    assert not any(m.quantize_weight for m in method.layers.values())
    method.on_step_start(3, model, ctx)
    assert all(m.is_binary for m in method.layers.values()) and method.in_final_form()
    state = method.state_dict()
    _, fresh, _, _ = _ste(two_step=True, two_step_fraction=0.3)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state == {"started": True, "weights_on": True}


def test_ste_options_are_validated():
    with pytest.raises(ValueError, match="two_step_fraction"):
        SteConfig(two_step_fraction=1.0)
    with pytest.raises(ValueError, match="unknown quantizer 'sign'"):
        _ste(activation="sign")
    with pytest.raises(ValueError, match="'approx_sign' binarizes activations, not weights; .* magnitude_aware_sign"):
        _ste(weight="approx_sign")
    with pytest.raises(ValueError, match="binarizes weights, not activations"):
        _ste(activation="magnitude_aware_sign")
    with pytest.raises(ConfigError, match="method.calibration_batches"):
        load_config(SMOKE, ["method.name=ste", "method.calibration_batches=-1"])


@pytest.mark.slow
def test_ste_trains_in_the_engine_and_rebuilds_binary_from_its_checkpoint(tmp_path):
    cfg = load_config(SMOKE, ["method.name=ste", "optim.epochs=2"])
    summary = train(cfg, tmp_path, resume=False)
    assert 0.0 <= summary["test_top1"] <= 1.0
    model, _ = build_from_checkpoint(tmp_path / "checkpoints" / "best.pt", torch.device("cpu"))
    assert [str(s.precision) for s in layer_specs(model)] == ["float", "w1a1", "w1a1", "w1a1", "float"]
