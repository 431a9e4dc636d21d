"""Config sections: typed pydantic models (``bitat_edge.schema.Schema``) whose errors speak config keys
(``bitat_edge.schema.describe`` with the noun "config key").

Every section of a train config (``data``, ``model``, a method's options, ``optim``, ...) is a
``Section``: strict types, unknown keys rejected, constraints declared on the fields
(``Field(ge=1)``). A problem is one sentence naming the key: when a config file is parsed,
``configs/x.yaml: config key 'optim.lr' must be a number > 0, got -1``; when a section is built in
code, ``optim.lr must be a number > 0, got -1``. Field validators raise ``ValueError`` fragments that
read after the key (``"must be ..."``); model validators raise whole sentences.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError

from bitat_edge import schema
from bitat_edge.schema import Expects, Schema
from train.errors import ConfigError

__all__ = ["Expects", "Section", "parse_section"]

S = TypeVar("S", bound="Section")


class Section(Schema):
    """A config section; building one in code raises ``error_class`` (one line) instead of pydantic's report."""

    config_key: ClassVar[str] = ""  # the section's key in a config ("data", "method"; "" at the top level)
    error_class: ClassVar[type[ConfigError]] = ConfigError

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            prefix = (self.config_key,) if self.config_key else ()
            raise self.error_class(schema.describe(exc, type(self), prefix=prefix, noun="config key")) from None

    # Pydantic calls a custom __init__ for nested models too; marked as the base one, a section inside
    # another validates as a plain model, so the error names the full key path.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def parse_section(cls: type[S], data: Any, source: str, prefix: tuple[str, ...] = ()) -> S:
    """Validate decoded config data against ``cls``; ``cls.error_class`` names ``source`` and the key."""
    return schema.parse(cls, data, source, cls.error_class, prefix, noun="config key")
