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
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

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


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The declared field names of the model that ``loc`` leads to from ``cls`` (empty if none)."""
    current: Any = cls
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return []
            current = info.annotation
        else:  # a list index or a mapping key: step into the element type
            current = _element(current)
    model = _model_in(current)
    return sorted(model.model_fields) if model is not None else []


def _element(annotation: Any) -> Any:
    """The element type of ``list[X]`` / ``dict[K, X]`` / ``X | None`` (the model inside, if any)."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if not args:
        return None
    return _model_in(args[-1]) or args[-1]


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside ``annotation`` (``X``, ``list[X]``, ``X | None``, ``dict[str, X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def describe(exc: ValidationError, source: str, cls: type[BaseModel]) -> str:
    """The first validation problem as one line: ``source: field 'a.b' <what is wrong>``."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    where = field_path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(cls, loc[:-1])
        what = "is unknown" + (f" (valid fields: {', '.join(valid)})" if valid else "")
    elif kind == "missing":
        what = "is missing"
    else:
        message = str(error["msg"])
        if kind == "value_error":  # our own validators' sentences
            what = message.removeprefix("Value error, ")
        else:
            what = f"{message[0].lower()}{message[1:]} (got {_short(error.get('input'))})"
        if loc and loc[-1] == "[key]":
            what = f"has a bad key: {what}"
    if not where:
        return f"{source}: {what}"
    return f"{source}: field '{where}' {what}"


def parse(cls: type[S], data: Any, source: str, error: type[SchemaError] = SchemaError) -> S:
    """Validate decoded data against ``cls``; raise ``error`` (one line) when it does not fit."""
    if not isinstance(data, dict):
        raise error(f"{source}: must be a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise error(describe(exc, source, cls)) from None


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
