"""Typed training configuration: YAML in, ``--set a.b=value`` overrides, validated sections out.

Every section is a ``train.sections.Section`` (a strict pydantic model); unknown keys at any level,
wrong types and out-of-range values are rejected with one sentence naming the key path. The
``method`` section is flat in YAML (``{name: bitat, <option>: ...}``); its options are validated
against the named method's ``config_cls`` at the same time, so every config mistake surfaces before
any data is read. ``TrainConfig.to_dict()`` is the resolved form written into every run directory
and checkpoint; ``config_from_dict`` reads it back.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, SerializeAsAny, field_validator, model_validator

from bitat_edge.atomic import write_text
from train import methods
from train.data import DataConfig
from train.errors import ConfigError
from train.methods import MethodConfig
from train.models import available_models, model_options
from train.sections import Section, parse_section

CONFIG_VERSION = 1


class ModelConfig(Section):
    """The backbone: ``arch`` from ``train.models.available_models()``; ``init_from`` a checkpoint whose
    weights are loaded before the method prepares the model; ``options`` extra ``build_model`` keywords."""

    config_key: ClassVar[str] = "model"

    arch: str = "reactnet"
    width: float = Field(1.0, gt=0)
    init_from: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch not in available_models():
            raise ValueError(f"must be one of {', '.join(available_models())}, got {arch!r}")
        return arch

    @model_validator(mode="after")
    def _options_of_the_arch(self) -> ModelConfig:
        valid = model_options(self.arch)
        unknown = sorted(set(self.options) - set(valid))
        if unknown:
            raise ValueError(f"unknown config key 'model.options.{unknown[0]}' for arch {self.arch!r}; valid keys "
                             f"in 'model.options': {', '.join(valid) or '(none)'}")
        return self


class MethodSpec(Section):
    """The training method by registered name and its typed options (flat in YAML: see ``to_dict``)."""

    config_key: ClassVar[str] = "method"

    name: str = "float"
    options: SerializeAsAny[MethodConfig] = Field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options.to_dict()}


class OptimConfig(Section):
    """Optimizer and per-step LR schedule. ``lr`` is the peak LR reached after ``warmup_epochs`` of linear
    warm-up; the schedule then decays to ``lr * min_lr_ratio``. No weight decay on 1-D parameters."""

    config_key: ClassVar[str] = "optim"

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(0.002, gt=0)
    weight_decay: float = Field(0.0001, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    epochs: int = Field(10, ge=1)
    warmup_epochs: float = Field(0.5, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class DistillConfig(Section):
    """Knowledge distillation from a teacher checkpoint: loss = (1-alpha)*CE + alpha*T^2*KL."""

    config_key: ClassVar[str] = "distill"

    teacher: str | None = None
    alpha: float = Field(0.9, ge=0, le=1)
    temperature: float = Field(1.0, gt=0)


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class RunConfig(Section):
    """How the run executes. ``amp`` acts only on CUDA; ``threads`` sets torch's intra-op threads;
    ``channels_last`` trains in NHWC memory layout; ``max_steps`` caps the optimizer steps (the
    schedule spans the capped length)."""

    config_key: ClassVar[str] = "run"

    device: str = "auto"
    amp: bool = True
    threads: int | None = Field(None, ge=1)
    channels_last: bool = False
    log_every: int = Field(20, ge=1)
    checkpoint_every_steps: int = Field(200, ge=1)
    tensorboard: bool = False
    progress: bool = True
    max_steps: int | None = Field(None, ge=1)
    export: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
        return device


class TrainConfig(Section):
    """A complete training run."""

    version: int = CONFIG_VERSION
    name: str = "run"
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodSpec = Field(default_factory=MethodSpec)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @field_validator("version")
    @classmethod
    def _readable_version(cls, version: int) -> int:
        if version != CONFIG_VERSION:
            raise ValueError(f"must be {CONFIG_VERSION} (the version this bitat-edge reads), got {version!r}")
        return version

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"must be a non-empty name without '/', got {name!r}")
        return name

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML/JSON-able values (the ``method`` section flattened)."""
        plain = self.model_dump(mode="json", exclude={"method"})
        return {name: self.method.to_dict() if name == "method" else plain[name] for name in type(self).model_fields}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the resolved config as YAML, atomically."""
        return write_text(path, self.to_yaml())


def _parse_method(data: Any, source: str) -> MethodSpec:
    """The flat ``method`` section: ``name`` picks the method, the other keys are its options."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: config key 'method' must be a mapping with a 'name', got {data!r}")
    options = dict(data)
    name = options.pop("name", "float")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: config key 'method.name' must be a string, got {name!r}")
    try:
        cls = methods.get(name)
    except ValueError:
        raise ConfigError(
            f"{source}: config key 'method.name' is {name!r}, which is not a known method; "
            f"available: {', '.join(methods.available())}"
        ) from None
    valid = sorted(cls.config_cls.model_fields)
    for key in options:
        if key not in valid:
            raise ConfigError(
                f"{source}: unknown config key 'method.{key}'; valid keys in 'method' for method "
                f"{name!r}: {', '.join(['name', *valid])}"
            )
    return MethodSpec(name=name, options=parse_section(cls.config_cls, options, source, ("method",)))


def config_from_dict(data: Any, source: str = "<config>") -> TrainConfig:
    """Validate a decoded config mapping (every section, the method's options included) and return the
    typed ``TrainConfig``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(data).__name__}")
    body = dict(data)
    method = _parse_method(body.pop("method", {}), source)
    return parse_section(TrainConfig, {**body, "method": method}, source)


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 numbers: ``1e-6`` is a float (PyYAML's YAML 1.1 rules read it as a string)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: plain data only


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into the key path and the YAML-parsed value."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {text!r} must look like section.key=value (for example optim.lr=0.01)")
    try:
        value = _yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML; quote it if it is a string") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=value`` override set (validation happens afterwards)."""
    result: dict[str, Any] = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                path = ".".join(parts[: i + 1])
                raise ConfigError(f"override {text!r}: '{path}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file as a mapping (empty file -> all defaults)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {source} not found; pass an existing YAML file (see configs/)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {source} is not UTF-8 text; is it really a YAML config?") from None
    except OSError as exc:
        raise ConfigError(f"config file {source} cannot be read ({exc.strerror})") from None
    try:
        data = _yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {source} is not valid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {source} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> TrainConfig:
    """Read ``path``, apply ``--set`` overrides, validate, and return the resolved config."""
    return config_from_dict(apply_overrides(read_yaml(path), overrides), str(path))


# Keys that change how a run executes or where it reads from, not what it computes: a run may be
# resumed or reused with other values for them.
RESULT_NEUTRAL_KEYS = frozenset({
    "data.data_dir", "data.download", "data.num_workers", "run.device", "run.threads", "run.channels_last",
    "run.log_every",
    "run.tensorboard", "run.progress",
})


def run_config_diff(stored: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Dotted keys, beyond ``RESULT_NEUTRAL_KEYS``, where a run's stored config differs from ``cfg``. The
    stored config is resolved by the current schema first, so an option added since the run was written
    counts at its default; one that no longer validates (a key removed since) is compared as written."""
    try:
        stored = config_from_dict(stored).to_dict()
    except ConfigError:
        pass
    return config_diff(stored, cfg.to_dict(), ignore=RESULT_NEUTRAL_KEYS)


def config_diff(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = (), prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved config dicts (``ignore``: dotted keys to skip)."""
    ignored = set(ignore)
    keys: list[str] = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if path in ignored:
            continue
        va, vb = a.get(key, None), b.get(key, None)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += config_diff(va, vb, ignored, f"{path}.")
        elif va != vb:
            keys.append(path)
    return keys
