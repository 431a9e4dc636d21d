"""Config: YAML round trip, overrides, and validation that names the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_diff,
    config_from_dict,
    load_config,
    run_config_diff,
)

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig()
    path = tmp_path / "config.yaml"
    cfg.save(path)
    again = load_config(path)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    assert yaml.safe_load(path.read_text())["version"] == 1


def test_partial_yaml_fills_defaults_and_keeps_values(tmp_path):
    path = _write(tmp_path, {"name": "x", "optim": {"lr": 1, "epochs": 3}, "model": {"arch": "tiny"}})
    cfg = load_config(path)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3
    assert cfg.optim.schedule == "cosine"
    assert cfg.model.arch == "tiny"
    assert cfg.data == TrainConfig().data


@pytest.mark.parametrize(
    ("data", "key", "valid"),
    [
        (
            {"nmae": "x"},
            "'nmae'",
            "valid keys in the top level: data, distill, method, model, name, optim, run",
        ),
        ({"optim": {"lrr": 0.1}}, "'optim.lrr'", "valid keys in 'optim': epochs, grad_clip, label_smoothing"),
        ({"run": {"gpus": 2}}, "'run.gpus'", "valid keys in 'run': amp, channels_last, checkpoint_every_steps"),
        ({"data": {"batch": 2}}, "'data.batch'", "batch_size"),
        ({"distill": {"teachr": None}}, "'distill.teachr'", "alpha, teacher, temperature"),
        ({"model": {"depth": 3}}, "'model.depth'", "arch, init_from, options, width"),
        ({"method": {"name": "float", "bits": 2}}, "'method.bits'", "for method 'float': name"),
        (
            {"model": {"arch": "tiny", "options": {"nonsense": 1}}},
            "'model.options.nonsense'",
            "model.options",
        ),
    ],
)
def test_unknown_keys_rejected_with_valid_list(tmp_path, data, key, valid):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert f"unknown config key {key}" in message
    assert valid in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"seed": "zero"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"optim": {"epochs": 2.5}}, "optim.epochs"),
        ({"optim": {"name": "adam"}}, "optim.name"),
        ({"optim": {"schedule": "step"}}, "optim.schedule"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"optim": {"label_smoothing": 1.0}}, "optim.label_smoothing"),
        ({"run": {"amp": "yes"}}, "run.amp"),
        ({"run": {"device": "tpu"}}, "run.device"),
        ({"run": {"max_steps": 0}}, "run.max_steps"),
        ({"distill": {"alpha": 2}}, "distill.alpha"),
        ({"model": {"arch": "vgg"}}, "model.arch"),
        ({"model": {"options": [1]}}, "model.options"),
        ({"optim": 3}, "optim"),
        ({"version": 2}, "version"),
        ({"data": {"batch_size": "many"}}, "data.batch_size"),
    ],
)
def test_bad_values_name_the_key(tmp_path, data, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}' must be"):
        load_config(_write(tmp_path, data))


def test_unknown_method_lists_available(tmp_path):
    with pytest.raises(ConfigError, match=r"'method.name' is 'magic'.*available: .*float"):
        load_config(_write(tmp_path, {"method": {"name": "magic"}}))


def test_overrides_resolve_onto_dataclasses(tmp_path):
    path = _write(tmp_path, {"optim": {"lr": 0.1}})
    cfg = load_config(
        path,
        [
            "optim.lr=0.5",
            "run.max_steps=7",
            "model.init_from=null",
            "data.augment=false",
            "model.options={}",
            "name=abc",
            "run.threads=2",
        ],
    )
    assert cfg.optim.lr == 0.5
    assert cfg.run.max_steps == 7
    assert cfg.model.init_from is None
    assert cfg.data.augment is False
    assert cfg.name == "abc"
    assert cfg.run.threads == 2


def test_override_of_unknown_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.momentun'"):
        load_config(_write(tmp_path, {}), ["optim.momentun=0.5"])


@pytest.mark.parametrize("text", ["optim.lr", "=3", "optim..lr=1", "optim.lr=[unclosed"])
def test_malformed_overrides(text):
    with pytest.raises(ConfigError, match="override"):
        apply_overrides({}, [text])


def test_override_into_a_value_is_rejected():
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listed)


def test_config_diff_ignores_given_keys():
    a = TrainConfig().to_dict()
    b = config_from_dict({"optim": {"lr": 0.5}, "run": {"progress": False}}).to_dict()
    assert config_diff(a, b) == ["optim.lr", "run.progress"]
    assert config_diff(a, b, ignore={"run.progress"}) == ["optim.lr"]


def test_run_config_diff_counts_options_added_since_the_run_at_their_defaults():
    cfg = config_from_dict({"method": {"name": "bitat"}})
    stored = cfg.to_dict()
    del stored["method"]["rotation_scale"]  # written before the option existed
    assert run_config_diff(stored, cfg) == []
    other = config_from_dict({"method": {"name": "bitat", "rotation_scale": 2.0}})
    assert run_config_diff(stored, other) == ["method.rotation_scale"]
    stored["method"]["gone_option"] = 1  # removed since: compared as written
    assert run_config_diff(stored, cfg) == ["method.gone_option", "method.rotation_scale"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.name == Path(name).stem
