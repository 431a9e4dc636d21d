"""Config sections: typed pydantic models (``bitat_edge.schema.Schema``) whose errors speak config keys.

Every section of a train config (``data``, ``model``, a method's options, ``optim``, ...) is a
``Section``: strict types, unknown keys rejected, constraints declared on the fields
(``Field(ge=1)``). A problem is one sentence naming the key: when a config file is parsed,
``configs/x.yaml: config key 'optim.lr' must be a number > 0, got -1``; when a section is built in
code, ``optim.lr must be a number > 0, got -1``. Field validators raise ``ValueError`` fragments that
read after the key (``"must be ..."``); model validators raise whole sentences.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from bitat_edge.schema import Schema, field_path
from train.errors import ConfigError

S = TypeVar("S", bound="Section")
_MAX_REPR = 60


@dataclass(frozen=True)
class Expects:
    """Field metadata: what a valid value is, in words, when the type alone says it badly
    (``Annotated[str | None, Expects("a path or empty")]``)."""

    text: str


class Section(Schema):
    """A config section; building one in code raises ``error_class`` (one line) instead of pydantic's report."""

    config_key: ClassVar[str] = ""  # the section's key in a config ("data", "method"; "" at the top level)
    error_class: ClassVar[type[ConfigError]] = ConfigError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise self.error_class(describe(exc, type(self), prefix=(self.config_key,) if self.config_key else ())) from None

    # Pydantic calls a custom __init__ for nested models too; marked as the base one, a section inside
    # another validates as a plain model, so the error names the full key path.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def parse_section(cls: type[S], data: Any, source: str, prefix: tuple[str, ...] = ()) -> S:
    """Validate decoded config data against ``cls``; ``cls.error_class`` names ``source`` and the key."""
    if not isinstance(data, dict):
        where = f"config key '{'.'.join(prefix)}'" if prefix else "a config"
        raise cls.error_class(f"{source}: {where} must be a mapping, got {_short(data)}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise cls.error_class(describe(exc, cls, source, prefix)) from None


def describe(exc: ValidationError, cls: type[BaseModel], source: str | None = None,
             prefix: tuple[str, ...] = ()) -> str:
    """The first problem of ``exc`` as one sentence (see the module docstring)."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    path = field_path((*prefix, *loc))
    lead = f"{source}: " if source else ""
    key = f"config key '{path}'" if source else path
    if error["type"] == "extra_forbidden":
        _, model = _walk(cls, loc[:-1])
        section = field_path((*prefix, *loc[:-1]))
        valid = ", ".join(sorted(model.model_fields)) if model is not None else "(none)"
        return f"{lead}unknown config key '{path}'; valid keys in {f'{section!r}' if section else 'the top level'}: {valid}"
    info, model = _walk(cls, loc)
    if error["type"] == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{lead}{message}" if info is None or model is not None else f"{lead}{key} {message}"
    if error["type"] == "missing":
        return f"{lead}{key} is missing"
    expects = _expects(info) if info is not None else "a mapping"
    return f"{lead}{key} must be {expects}, got {_short(error.get('input'))}"


def _walk(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[FieldInfo | None, type[BaseModel] | None]:
    """The field ``loc`` leads to from ``cls`` (None: ``cls`` itself) and the section model it holds, if any."""
    info: FieldInfo | None = None
    model: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return info, None
        info = model.model_fields[part]
        model = _model(info.annotation)
    return info, model


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _expects(info: FieldInfo) -> str:
    """What a valid value of the field is, in words: ``an integer >= 1``, ``in [0, 1)``, ``one of 'a', 'b'``."""
    for item in info.metadata:
        if isinstance(item, Expects):
            return item.text
    bounds = {name: getattr(item, name) for item in info.metadata for name in ("gt", "ge", "lt", "le")
              if getattr(item, name, None) is not None}
    return _words(info.annotation, bounds)


def _words(hint: Any, bounds: dict[str, Any]) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        text = " or ".join(_words(a, bounds) for a in args if a is not type(None))
        return f"empty or {text}" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint in (int, float):
        low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
        high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
        if low and high:
            return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
        noun = "an integer" if hint is int else "a number"
        if low:
            return f"{noun} {'>=' if low[0] == '[' else '>'} {low[1]}"
        if high:
            return f"{noun} {'<=' if high[0] == ']' else '<'} {high[1]}"
        return noun
    names = {bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    if origin is dict or hint is dict or _model(hint) is not None:
        return "a mapping"
    if origin in (list, tuple) or hint in (list, tuple):
        return "a list"
    return getattr(hint, "__name__", str(hint))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."
