"""One way to validate what crosses a file boundary: typed pydantic models, one-line errors.

Every file one stage writes and another reads (the manifest, the bench session record) and every
user-written YAML (train configs, device profiles and inventories) is a ``Schema`` subclass:
strict types (no silent ``"1"`` -> ``1``, no booleans for numbers), unknown fields rejected, and
each problem reported as one sentence naming the source and the field,
``runs/x/manifest.json: field 'layers[0].precision' must be ... (got 'w9a9')``.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from bitat_edge.atomic import write_json

S = TypeVar("S", bound="Schema")
_MAX_REPR = 60


class SchemaError(ValueError):
    """A file or mapping does not fit its schema; the message names the source and the field."""


class Schema(BaseModel):
    """Base of every typed record: strict and closed (unknown fields are errors). Assignments are not
    checked: ``save_json`` validates the whole record before it writes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (what ``parse`` reads back)."""
        return self.model_dump(mode="json")


def field_path(loc: tuple[Any, ...]) -> str:
    """('layers', 0, 'precision') -> 'layers[0].precision'."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad mapping key
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


@dataclass(frozen=True)
class Expects:
    """Field metadata: what a valid value is, in words, when the type alone says it badly
    (``Annotated[str | None, Expects("a path or empty")]``)."""

    text: str


def _walk(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[FieldInfo | None, type[BaseModel] | None]:
    """The field ``loc`` leads to from ``cls`` (None: ``cls`` itself) and the record type it holds, if any.
    List indices and mapping keys step into the element record of ``list[X]`` / ``dict[str, X]``."""
    info: FieldInfo | None = None
    model: type[BaseModel] | None = cls
    collection = False  # the current field holds records in a list or mapping
    for part in loc:
        if collection:
            collection = False
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return info, None
        info = model.model_fields[part]
        model = _model_in(info.annotation)
        collection = model is not None and get_origin(info.annotation) in (list, dict)
    return info, model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The record type inside ``annotation`` (``X``, ``list[X]``, ``X | None``, ``dict[str, X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _expects(info: FieldInfo) -> str:
    """What a valid value of the field is, in words: ``an integer >= 1``, ``in [0, 1)``, ``one of 'a', 'b'``."""
    for item in info.metadata:
        if isinstance(item, Expects):
            return item.text
    return _words(info.annotation, _bounds(info.metadata))


def _bounds(metadata: Any) -> dict[str, Any]:
    """Numeric bounds (gt/ge/lt/le) declared in field metadata, including inside a nested FieldInfo."""
    found: dict[str, Any] = {}
    for item in metadata:
        found.update(_bounds(getattr(item, "metadata", ())) if isinstance(item, FieldInfo) else {})
        found.update({name: getattr(item, name) for name in ("gt", "ge", "lt", "le")
                      if getattr(item, name, None) is not None})
    return found


def _words(hint: Any, bounds: dict[str, Any]) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:  # constraints written inside the type: Annotated[int, Field(gt=0)] | None
        return _words(args[0], {**bounds, **_bounds(args[1:])})
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
    if origin in (list, tuple) or hint in (list, tuple):
        return f"a list of {_words(args[0], {})}s" if args and args[0] in (int, float) else "a list"
    if origin is dict or hint is dict or _model_in(hint) is not None:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def describe(exc: ValidationError, cls: type[BaseModel], source: str | None = None,
             prefix: tuple[str, ...] = (), noun: str = "field") -> str:
    """The first problem of ``exc`` as one sentence, e.g. ``src: field 'a.b' must be an integer >= 1,
    got 0`` or ``src: unknown field 'a.c'; valid keys in 'a': b, d``. ``prefix`` is prepended to every
    path (a section validated on its own); without ``source`` (a record built in code) the path stands
    alone. Field validators raise ``ValueError`` fragments that read after the field name
    (``"must be ..."``); model validators raise whole sentences."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    path = field_path((*prefix, *loc))
    lead = f"{source}: " if source else ""
    key = f"{noun} '{path}'" if source else path
    if error["type"] == "extra_forbidden":
        _, model = _walk(cls, loc[:-1])
        section = field_path((*prefix, *loc[:-1]))
        valid = ", ".join(sorted(model.model_fields)) if model is not None else "(none)"
        return f"{lead}unknown {noun} '{path}'; valid keys in {f'{section!r}' if section else 'the top level'}: {valid}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[-1] == "[key]":
        return f"{lead}{key} is not a valid key: {message[0].lower()}{message[1:]}"
    info, model = _walk(cls, loc)
    if error["type"] == "value_error":
        return f"{lead}{message}" if info is None or model is not None else f"{lead}{key} {message}"
    if error["type"] == "missing":
        return f"{lead}{key} is missing"
    expects = _expects(info) if info is not None else "a mapping"
    return f"{lead}{key} must be {expects}, got {_short(error.get('input'))}"


def parse(cls: type[S], data: Any, source: str, error: type[SchemaError] = SchemaError,
          prefix: tuple[str, ...] = (), noun: str = "field") -> S:
    """Validate decoded data against ``cls``; raise ``error`` (one line, see ``describe``) when it does not fit."""
    if not isinstance(data, dict):
        where = f"{noun} '{field_path(prefix)}'" if prefix else "it"
        raise error(f"{source}: {where} must be a mapping, got {_short(data)}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise error(describe(exc, cls, source, prefix, noun)) from None


def read_text(path: str | os.PathLike[str], what: str, error: type[SchemaError] = SchemaError) -> str:
    """A text file's content, or ``error`` saying it is missing or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (bad UTF-8); is it really a {what}?") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None


def read_json(path: str | os.PathLike[str], what: str, error: type[SchemaError] = SchemaError) -> dict[str, Any]:
    """Read and decode a JSON file that must hold an object."""
    text = read_text(path, what, error)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: the {what} must be a JSON object, got {type(data).__name__}")
    return data


def load_json(cls: type[S], path: str | os.PathLike[str], what: str,
              error: type[SchemaError] = SchemaError) -> S:
    """Read, decode and validate a JSON file."""
    return parse(cls, read_json(path, what, error), str(path), error)


def load_yaml_mapping(path: str | os.PathLike[str], what: str, error: type[SchemaError] = SchemaError) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    text = read_text(path, what, error)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: the {what} must be a YAML mapping, got {type(data).__name__}")
    return data


def save_json(record: Schema, path: str | os.PathLike[str]) -> Path:
    """Re-validate ``record`` (fields may have been assigned) and write it atomically."""
    data = record.to_dict()
    parse(type(record), data, str(path))
    return write_json(path, data)
