"""Typed training configuration: YAML in, ``--set a.b=value`` overrides, validated dataclasses out.

Every section is a dataclass; unknown keys at any level, wrong types and out-of-range values are
rejected with one sentence naming the key path. The ``method`` section is flat in YAML
(``{name: bitat, <option>: ...}``); its options are validated against the named method's
``config_cls``. ``TrainConfig.to_dict()`` is the resolved form written into every run directory
and checkpoint; ``config_from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from bitat_edge.atomic import write_text
from train import methods
from train.data import DataConfig
from train.methods import MethodConfig
from train.models import available_models, model_options

CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A config file, a config key or an override is wrong (the message names it)."""


@dataclass
class ModelConfig:
    """The backbone: ``arch`` from ``train.models.available_models()``; ``init_from`` a checkpoint whose
    weights are loaded before the method prepares the model; ``options`` extra ``build_model`` keywords."""

    arch: str = "reactnet"
    width: float = 1.0
    init_from: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodSpec:
    """The training method by registered name and its typed options (flat in YAML)."""

    name: str = "float"
    options: MethodConfig = field(default_factory=MethodConfig)


@dataclass
class OptimConfig:
    """Optimizer and per-step LR schedule. ``lr`` is the peak LR reached after ``warmup_epochs`` of linear
    warm-up; the schedule then decays to ``lr * min_lr_ratio``. No weight decay on 1-D parameters."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.002
    weight_decay: float = 0.0001
    momentum: float = 0.9
    epochs: int = 10
    warmup_epochs: float = 0.5
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    label_smoothing: float = 0.1
    grad_clip: float | None = None
    min_lr_ratio: float = 0.0


@dataclass
class DistillConfig:
    """Knowledge distillation from a teacher checkpoint: loss = (1-alpha)*CE + alpha*T^2*KL."""

    teacher: str | None = None
    alpha: float = 0.9
    temperature: float = 1.0


@dataclass
class RunConfig:
    """How the run executes. ``amp`` acts only on CUDA; ``threads`` sets torch's intra-op threads;
    ``max_steps`` caps the optimizer steps (the schedule spans the capped length)."""

    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    log_every: int = 20
    checkpoint_every_steps: int = 200
    tensorboard: bool = False
    progress: bool = True
    max_steps: int | None = None
    export: bool = True


@dataclass
class TrainConfig:
    """A complete training run."""

    version: int = CONFIG_VERSION
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodSpec = field(default_factory=MethodSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML/JSON-able values (the ``method`` section flattened)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "method":
                out["method"] = {"name": value.name, **_plain(dataclasses.asdict(value.options))}
            elif dataclasses.is_dataclass(value):
                out[f.name] = _plain(dataclasses.asdict(value))
            else:
                out[f.name] = value
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the resolved config as YAML, atomically."""
        return write_text(path, self.to_yaml())


def _plain(value: Any) -> Any:
    """Tuples become lists so the YAML stays safe_load-able and comparisons are stable."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in get_args(hint) if a is not type(None)]
        text = " or ".join(parts)
        return text + " or null" if type(None) in get_args(hint) else text
    if origin in (list, tuple):
        return "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return str(hint)


def _coerce(value: Any, hint: Any, where: str, source: str) -> Any:
    """Check ``value`` against the type ``hint`` and return it converted (int -> float, list -> tuple)."""
    origin = get_origin(hint)
    bad = ConfigError(f"{source}: config key '{where}' must be {_describe(hint)}, got {value!r}")
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in get_args(hint) and not isinstance(value, bool):
            return value
        raise bad
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise bad
        return _build(hint, value, where, source)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads exponents without a dot ("1e-6") as strings
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise bad
            items = [_coerce(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_hint = args[0] if args else Any
            items = [_coerce(v, item_hint, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad
        args = get_args(hint)
        value_hint = args[1] if args else Any
        return {str(k): _coerce(v, value_hint, f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise bad


def _build(cls: type, data: dict[str, Any], where: str, source: str) -> Any:
    """Construct dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in valid:
            section = f"'{where}'" if where else "the top level"
            listed = ", ".join(sorted(valid)) or "(none)"
            raise ConfigError(
                f"{source}: unknown config key '{prefix}{key}'; valid keys in {section}: {listed}"
            )
    kwargs = {key: _coerce(value, hints[key], f"{prefix}{key}", source) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: config section '{where or 'top level'}' is invalid: {exc}") from None


def _build_method(data: Any, source: str) -> MethodSpec:
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
    valid = [f.name for f in dataclasses.fields(cls.config_cls)]
    for key in options:
        if key not in valid:
            raise ConfigError(
                f"{source}: unknown config key 'method.{key}'; valid keys in 'method' for method "
                f"{name!r}: {', '.join(['name', *sorted(valid)])}"
            )
    return MethodSpec(name=name, options=_build(cls.config_cls, options, "method", source))


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def _check_ranges(cfg: TrainConfig, source: str) -> None:
    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{source}: config key '{key}' must be {what}, got {value!r}")

    need(cfg.version == CONFIG_VERSION, "version", f"{CONFIG_VERSION} (the version this bitat-edge reads)",
         cfg.version)
    need(bool(cfg.name) and "/" not in cfg.name, "name", "a non-empty name without '/'", cfg.name)
    need(cfg.seed >= 0, "seed", "a non-negative integer", cfg.seed)
    need(cfg.model.width > 0, "model.width", "positive", cfg.model.width)
    need(cfg.model.arch in available_models(), "model.arch", f"one of {', '.join(available_models())}",
         cfg.model.arch)
    unknown = sorted(set(cfg.model.options) - set(model_options(cfg.model.arch)))
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key 'model.options.{unknown[0]}' for arch {cfg.model.arch!r}; valid keys in "
            f"'model.options': {', '.join(model_options(cfg.model.arch)) or '(none)'}"
        )
    o = cfg.optim
    need(o.lr > 0, "optim.lr", "positive", o.lr)
    need(o.weight_decay >= 0, "optim.weight_decay", "non-negative", o.weight_decay)
    need(0 <= o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum)
    need(o.epochs >= 1, "optim.epochs", "at least 1", o.epochs)
    need(o.warmup_epochs >= 0, "optim.warmup_epochs", "non-negative", o.warmup_epochs)
    need(0 <= o.label_smoothing < 1, "optim.label_smoothing", "in [0, 1)", o.label_smoothing)
    need(o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip", "positive or null", o.grad_clip)
    need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "in [0, 1]", o.min_lr_ratio)
    d = cfg.distill
    need(0 <= d.alpha <= 1, "distill.alpha", "in [0, 1]", d.alpha)
    need(d.temperature > 0, "distill.temperature", "positive", d.temperature)
    r = cfg.run
    need(bool(_DEVICE.match(r.device)), "run.device", "auto, cpu, cuda, cuda:N or mps", r.device)
    need(r.threads is None or r.threads >= 1, "run.threads", "at least 1 or null", r.threads)
    need(r.log_every >= 1, "run.log_every", "at least 1", r.log_every)
    need(r.checkpoint_every_steps >= 1, "run.checkpoint_every_steps", "at least 1", r.checkpoint_every_steps)
    need(r.max_steps is None or r.max_steps >= 1, "run.max_steps", "at least 1 or null", r.max_steps)


def config_from_dict(data: Any, source: str = "<config>") -> TrainConfig:
    """Validate a decoded config mapping and return the typed ``TrainConfig``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(data).__name__}")
    body = dict(data)
    method = _build_method(body.pop("method", {}), source)
    cfg = _build(TrainConfig, body, "", source)
    cfg.method = method
    _check_ranges(cfg, source)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into the key path and the YAML-parsed value."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {text!r} must look like section.key=value (for example optim.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML; quote it if it is a string") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=value`` override set (validation happens afterwards)."""
    result: dict[str, Any] = _plain(data)
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
    except OSError as exc:
        raise ConfigError(f"config file {source} cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
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
    "data.data_dir", "data.download", "data.num_workers", "run.device", "run.threads", "run.log_every",
    "run.tensorboard", "run.progress",
})


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
